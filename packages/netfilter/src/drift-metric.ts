// Drift: rules of ours that someone else removed from the kernel (`iptables -t nat -F -X`,
// `nft flush ruleset`, a firewalld reload, an IPVS virtual server deleted by hand). A backend
// that finds its data plane gone counts it here and rewrites it. Upstream has no such series;
// the name follows its sync_proxy_rules_* counters, and every kernel backend shares it.

import { counter, type BackendContext, type IPFamily } from '@kube-proxy-ts/core';
import type { FamilyCounter } from './metrics.js';

/** The series name without the `kubeproxy_` prefix. */
export const DRIFT_METRIC = 'sync_proxy_rules_drift_detected_total';

export type DriftCounter = FamilyCounter;

export function driftCounter(registry: BackendContext['metrics']): DriftCounter {
  return counter(registry, {
    name: DRIFT_METRIC,
    help: 'Cumulative times the proxy found rules it had written missing from the kernel and rewrote them',
    labelNames: ['ip_family'] as const,
  });
}

/** Shows the family's series at 0 from start, so that rate() and alerts see it before the first drift. */
export function registerDriftSeries(registry: BackendContext['metrics'], family: IPFamily): void {
  driftCounter(registry).inc({ ip_family: family }, 0);
}
