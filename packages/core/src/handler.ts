// What a source (Kubernetes informers, manifest files) calls as objects come and go.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';

export interface ProxyEventHandler {
  onServiceAdd(service: V1Service): void;
  onServiceUpdate(oldService: V1Service, service: V1Service): void;
  onServiceDelete(service: V1Service): void;
  onServicesSynced(): void;
  onEndpointSliceAdd(slice: V1EndpointSlice): void;
  /**
   * `oldSlice` is what was delivered before, but the sources keep only its metadata and
   * addressType (a cluster's endpoints are held once, by the trackers): its endpoints and ports
   * are absent.
   */
  onEndpointSliceUpdate(oldSlice: V1EndpointSlice, slice: V1EndpointSlice): void;
  /** Like `oldSlice` above, a slice deleted while the source was not watching (found missing from a relist) comes without its endpoints and ports. */
  onEndpointSliceDelete(slice: V1EndpointSlice): void;
  onEndpointSlicesSynced(): void;
  onNodeAdd(node: V1Node): void;
  onNodeUpdate(oldNode: V1Node, node: V1Node): void;
  onNodeDelete(node: V1Node): void;
  onNodeSynced(): void;
  /**
   * The complete list of Service CIDRs (every ServiceCIDR object's spec.cidrs, both families)
   * after any ServiceCIDR change. Optional: sources without ServiceCIDRs never call it.
   */
  onServiceCIDRsChanged?(cidrs: readonly string[]): void;
}
