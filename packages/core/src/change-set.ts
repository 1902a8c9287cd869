// Helpers around ChangeSet, the "what moved" half of every sync.

import type { ChangeSet } from './contract.js';

/** A ChangeSet in which nothing moved (also what a periodic resync passes). */
export function emptyChangeSet(): ChangeSet {
  return {
    servicePorts: new Set(),
    nodeChanged: false,
    deletedUDPClusterIPs: new Set(),
    staleUDPEndpoints: [],
    newlyActiveUDPServices: new Set(),
    lastChangeTriggerTimes: new Map(),
  };
}

/** Whether a ChangeSet asks for any work at all. */
export function isEmptyChangeSet(c: ChangeSet): boolean {
  return (
    c.servicePorts.size === 0 &&
    !c.nodeChanged &&
    c.deletedUDPClusterIPs.size === 0 &&
    c.staleUDPEndpoints.length === 0 &&
    c.newlyActiveUDPServices.size === 0
  );
}
