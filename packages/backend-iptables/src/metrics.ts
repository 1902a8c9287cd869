// The iptables backend's own metrics (upstream's names); the restore-failure counters it shares
// with the IPVS backend live in @kube-proxy-ts/netfilter, the sync durations in the app.
// Registered once per registry.

import { gauge } from '@kube-proxy-ts/core';
import type { Gauge, Registry } from 'prom-client';

export interface IptablesMetrics {
  /** kubeproxy_sync_proxy_rules_iptables_total{table,ip_family}: rules the kernel holds for us. */
  readonly rulesTotal: Gauge<'table' | 'ip_family'>;
  /** kubeproxy_sync_proxy_rules_iptables_last{table,ip_family}: rules written by the last sync. */
  readonly rulesLast: Gauge<'table' | 'ip_family'>;
}

export function iptablesMetrics(registry: Registry): IptablesMetrics {
  const labelNames = ['table', 'ip_family'] as const;
  return {
    rulesTotal: gauge(registry, { name: 'sync_proxy_rules_iptables_total', help: 'Total number of iptables rules owned by kube-proxy', labelNames }),
    rulesLast: gauge(registry, { name: 'sync_proxy_rules_iptables_last', help: 'Number of iptables rules written by kube-proxy in last sync', labelNames }),
  };
}
