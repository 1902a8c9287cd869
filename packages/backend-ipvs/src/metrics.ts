// The series IPVS mode records. Each is shared with another kernel backend and so is defined
// once in netfilter; IPVS mode has no series of its own. The daemon, not this backend, counts
// sync_proxy_rules_no_local_endpoints_total.

import type { BackendContext, IPFamily } from '@kube-proxy-ts/core';
import { driftCounter, iptablesRestoreMetrics, registerDriftSeries } from '@kube-proxy-ts/netfilter';

type Registry = BackendContext['metrics'];

/** At start: the family's drift series shows 0 before the first drift. */
export function registerIpvsSeries(registry: Registry, family: IPFamily): void {
  registerDriftSeries(registry, family);
}

/** kubeproxy_sync_proxy_rules_drift_detected_total: something the last sync left in place was gone. */
export function countDrift(registry: Registry, family: IPFamily): void {
  driftCounter(registry).inc({ ip_family: family });
}

/** kubeproxy_sync_proxy_rules_iptables_restore_failures_total, as iptables mode counts it. */
export function countIptablesRestoreFailure(registry: Registry, family: IPFamily): void {
  iptablesRestoreMetrics(registry).failures.inc({ ip_family: family });
}
