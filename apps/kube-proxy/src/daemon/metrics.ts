// The metrics the daemon itself records (the backends record their own: iptables restore
// failures, rule counts, ...). Names, types and buckets are upstream's; series recorded per IP
// family carry an `ip_family` label, as recent upstream releases do. Upstream has no sync
// deadline, so sync_proxy_rules_deadline_exceeded_total is this proxy's own.

import { collectDefaultMetrics, Registry } from 'prom-client';
import { counter, exponentialBuckets, gauge, histogram } from '@kube-proxy-ts/core';
import { registerBuildInfo } from '../version-metrics.js';

const SYNC_BUCKETS = exponentialBuckets(0.001, 2, 15);

/** 0.25, 0.5, 1..59 by 1, 60..115 by 5, 120..300 by 30: upstream's network programming buckets. */
export function networkProgrammingBuckets(): number[] {
  const out = [0.25, 0.5];
  for (let s = 1; s <= 59; s++) out.push(s);
  for (let s = 60; s <= 115; s += 5) out.push(s);
  for (let s = 120; s <= 300; s += 30) out.push(s);
  return out;
}

export function daemonMetrics(registry: Registry) {
  const fam = ['ip_family'] as const;
  return {
    syncDuration: histogram(registry, { name: 'sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', labelNames: fam, buckets: SYNC_BUCKETS }),
    syncFullDuration: histogram(registry, { name: 'sync_full_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for full resyncs', labelNames: fam, buckets: SYNC_BUCKETS }),
    syncPartialDuration: histogram(registry, { name: 'sync_partial_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for partial resyncs', labelNames: fam, buckets: SYNC_BUCKETS }),
    lastTimestamp: gauge(registry, { name: 'sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', labelNames: fam }),
    lastQueuedTimestamp: gauge(registry, { name: 'sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', labelNames: fam }),
    networkProgramming: histogram(registry, { name: 'network_programming_duration_seconds', help: 'In Cluster Network Programming Latency in seconds', labelNames: fam, buckets: networkProgrammingBuckets() }),
    endpointChangesPending: gauge(registry, { name: 'sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules Endpoint changes', labelNames: fam }),
    endpointChangesTotal: counter(registry, { name: 'sync_proxy_rules_endpoint_changes_total', help: 'Cumulative proxy rules Endpoint changes', labelNames: fam }),
    serviceChangesPending: gauge(registry, { name: 'sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', labelNames: fam }),
    serviceChangesTotal: counter(registry, { name: 'sync_proxy_rules_service_changes_total', help: 'Cumulative proxy rules Service changes', labelNames: fam }),
    syncDeadlineExceeded: counter(registry, { name: 'sync_proxy_rules_deadline_exceeded_total', help: 'Cumulative syncs of proxy rules counted as failed because they did not finish within the sync deadline', labelNames: fam }),
    noLocalEndpoints: gauge(registry, { name: 'sync_proxy_rules_no_local_endpoints_total', help: 'Number of services with a Local traffic policy and no endpoints', labelNames: ['traffic_policy', 'ip_family'] as const }),
    healthzTotal: counter(registry, { name: 'proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status', labelNames: ['code'] as const }),
    livezTotal: counter(registry, { name: 'proxy_livez_total', help: 'Cumulative proxy livez HTTP status', labelNames: ['code'] as const }),
    conntrackReconcilerDuration: histogram(registry, { name: 'conntrack_reconciler_sync_duration_seconds', help: 'ReconcileConntrackFlowsLatency latency in seconds', labelNames: fam, buckets: SYNC_BUCKETS }),
    conntrackReconcilerDeleted: counter(registry, { name: 'conntrack_reconciler_deleted_entries_total', help: 'Cumulative conntrack flows deleted by conntrack reconciler', labelNames: fam }),
  };
}

export type DaemonMetrics = ReturnType<typeof daemonMetrics>;

/** A registry with the process metrics (CPU, memory, fds, start time), the daemon's series and kubernetes_build_info. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  daemonMetrics(registry);
  registerBuildInfo(registry);
  return registry;
}
