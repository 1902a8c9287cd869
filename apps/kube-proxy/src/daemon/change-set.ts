// A failed sync's changes must not be lost: they are carried into the next attempt, merged with
// whatever moved meanwhile, so a partial-sync backend still rewrites everything that changed.

import type { ChangeSet, ServicePortKey } from '@kube-proxy-ts/core';

export function mergeChangeSets(a: ChangeSet, b: ChangeSet): ChangeSet {
  const triggers = new Map<ServicePortKey, number[]>();
  for (const m of [a.lastChangeTriggerTimes, b.lastChangeTriggerTimes]) {
    for (const [k, times] of m) triggers.set(k, [...(triggers.get(k) ?? []), ...times]);
  }
  return {
    servicePorts: new Set([...a.servicePorts, ...b.servicePorts]),
    nodeChanged: a.nodeChanged || b.nodeChanged,
    serviceCIDRsChanged: a.serviceCIDRsChanged || b.serviceCIDRsChanged,
    deletedUDPClusterIPs: new Set([...a.deletedUDPClusterIPs, ...b.deletedUDPClusterIPs]),
    staleUDPEndpoints: [...a.staleUDPEndpoints, ...b.staleUDPEndpoints],
    newlyActiveUDPServices: new Set([...a.newlyActiveUDPServices, ...b.newlyActiveUDPServices]),
    lastChangeTriggerTimes: triggers,
  };
}
