// The nftables backend's own metrics (upstream's names); the sync durations and counts common to
// every mode belong to the app. Registered once per registry.

import { counter } from '@kube-proxy-ts/core';
import type { Counter, Registry } from 'prom-client';

export interface NftablesMetrics {
  readonly syncFailures: Counter<'ip_family'>;
  readonly cleanupFailures: Counter<'ip_family'>;
}

export function nftablesMetrics(registry: Registry): NftablesMetrics {
  return {
    syncFailures: counter(registry, {
      name: 'sync_proxy_rules_nftables_sync_failures_total',
      help: 'Cumulative proxy nftables sync failures',
      labelNames: ['ip_family'] as const,
    }),
    cleanupFailures: counter(registry, {
      name: 'sync_proxy_rules_nftables_cleanup_failures_total',
      help: 'Cumulative proxy nftables cleanup failures',
      labelNames: ['ip_family'] as const,
    }),
  };
}
