// The empty ChangeSet, the "what moved" half of every sync when nothing moved.

import type { ChangeSet } from './contract.js';

/** A ChangeSet in which nothing moved (also what a periodic resync passes). */
export function emptyChangeSet(): ChangeSet {
  return {
    servicePorts: new Set(),
    nodeChanged: false,
    serviceCIDRsChanged: false,
    deletedUDPClusterIPs: new Set(),
    staleUDPEndpoints: [],
    newlyActiveUDPServices: new Set(),
    lastChangeTriggerTimes: new Map(),
  };
}
