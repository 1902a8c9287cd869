// Series that more than one kernel backend records, each defined here once under upstream's
// name: the iptables and IPVS backends both program iptables through iptables-restore and
// count its failures in the same series. Series of one backend alone stay in that backend;
// sync_proxy_rules_no_local_endpoints_total is the daemon's, computed from the state in every
// mode.

import { counter, type BackendContext, type IPFamily } from '@kube-proxy-ts/core';

/** The one operation backends need, so that this package's types do not name prom-client's. */
export interface FamilyCounter {
  inc(labels: { ip_family: IPFamily }, value?: number): void;
}

export interface IptablesRestoreMetrics {
  /** kubeproxy_sync_proxy_rules_iptables_restore_failures_total: every failed iptables-restore. */
  readonly failures: FamilyCounter;
  /** kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total: those of partial syncs. */
  readonly partialFailures: FamilyCounter;
}

/** Gets the series from `registry`, registering them on first use (both families share them). */
export function iptablesRestoreMetrics(registry: BackendContext['metrics']): IptablesRestoreMetrics {
  const labelNames = ['ip_family'] as const;
  return {
    failures: counter(registry, { name: 'sync_proxy_rules_iptables_restore_failures_total', help: 'Cumulative proxy iptables restore failures', labelNames }),
    partialFailures: counter(registry, { name: 'sync_proxy_rules_iptables_partial_restore_failures_total', help: 'Cumulative proxy iptables partial restore failures', labelNames }),
  };
}
