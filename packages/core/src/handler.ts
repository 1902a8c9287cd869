// What a source (Kubernetes informers, manifest files) calls as objects come and go.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';

export interface ProxyEventHandler {
  onServiceAdd(service: V1Service): void;
  onServiceUpdate(oldService: V1Service, service: V1Service): void;
  onServiceDelete(service: V1Service): void;
  onServicesSynced(): void;
  onEndpointSliceAdd(slice: V1EndpointSlice): void;
  onEndpointSliceUpdate(oldSlice: V1EndpointSlice, slice: V1EndpointSlice): void;
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
