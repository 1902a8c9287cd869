// Builds a ProxyState the way the daemon does: Kubernetes objects through core's tracker.

import { ProxyStateTracker, type IPFamily, type ProxyState } from '@kube-proxy-ts/core';
import { node, type endpointSlice, type service } from '@kube-proxy-ts/testing';

type V1Service = ReturnType<typeof service>;
type V1EndpointSlice = ReturnType<typeof endpointSlice>;

export interface StateObjects {
  services?: V1Service[];
  slices?: V1EndpointSlice[];
  family?: IPFamily;
  nodeIPs?: string[];
}

/** A synced tracker holding `objects`; later events and checkpoints give real ChangeSets. */
export function stateTracker(objects: StateObjects): ProxyStateTracker {
  const tracker = new ProxyStateTracker({ ipFamily: objects.family ?? 'IPv4', nodeName: 'node1' });
  tracker.onNodeAdd(node('node1', { addresses: objects.nodeIPs ?? ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] }));
  for (const s of objects.services ?? []) tracker.onServiceAdd(s);
  for (const s of objects.slices ?? []) tracker.onEndpointSliceAdd(s);
  tracker.onServicesSynced();
  tracker.onEndpointSlicesSynced();
  tracker.onNodeSynced();
  return tracker;
}

export function proxyState(objects: StateObjects): ProxyState {
  return stateTracker(objects).checkpoint().state;
}
