// ClusterFeed: API objects fed into core's ProxyStateTracker the way the daemon's informers feed
// it (adds, updates with the previous object, deletes), so states and change sets are real ones.

import { ProxyStateTracker, type ChangeSet, type IPFamily, type ProxyState } from '@kube-proxy-ts/core';
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';

export interface ClusterFeedOptions {
  ipFamily?: IPFamily;
  /** This node; it is added before everything is marked synced. */
  node: V1Node;
}

export class ClusterFeed {
  readonly ipFamily: IPFamily;
  readonly tracker: ProxyStateTracker;
  private readonly services = new Map<string, V1Service>();
  private readonly slices = new Map<string, V1EndpointSlice>();
  private nodeObject: V1Node;

  constructor(options: ClusterFeedOptions) {
    this.ipFamily = options.ipFamily ?? 'IPv4';
    this.nodeObject = options.node;
    this.tracker = new ProxyStateTracker({ ipFamily: this.ipFamily, nodeName: options.node.metadata!.name! });
    this.tracker.onNodeAdd(options.node);
    this.tracker.onNodeSynced();
    this.tracker.onServicesSynced();
    this.tracker.onEndpointSlicesSynced();
  }

  /** Adds each object, or updates it when one of that kind and name was fed before. */
  upsert(...objects: Array<V1Service | V1EndpointSlice>): this {
    for (const o of objects) {
      const key = `${o.metadata!.namespace}/${o.metadata!.name}`;
      if ('addressType' in o) {
        const prev = this.slices.get(key);
        if (prev) this.tracker.onEndpointSliceUpdate(prev, o);
        else this.tracker.onEndpointSliceAdd(o);
        this.slices.set(key, o);
      } else {
        const prev = this.services.get(key);
        if (prev) this.tracker.onServiceUpdate(prev, o);
        else this.tracker.onServiceAdd(o);
        this.services.set(key, o);
      }
    }
    return this;
  }

  deleteService(namespace: string, name: string): this {
    const key = `${namespace}/${name}`;
    const prev = this.services.get(key);
    if (prev) this.tracker.onServiceDelete(prev);
    this.services.delete(key);
    return this;
  }

  deleteSlice(namespace: string, name: string): this {
    const key = `${namespace}/${name}`;
    const prev = this.slices.get(key);
    if (prev) this.tracker.onEndpointSliceDelete(prev);
    this.slices.delete(key);
    return this;
  }

  updateNode(next: V1Node): this {
    this.tracker.onNodeUpdate(this.nodeObject, next);
    this.nodeObject = next;
    return this;
  }

  checkpoint(): { state: ProxyState; changes: ChangeSet } {
    return this.tracker.checkpoint();
  }
}
