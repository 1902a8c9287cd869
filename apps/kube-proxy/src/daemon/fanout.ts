// One source feeds every IP family: each event goes to both families' trackers, marks the
// families that exist as having a queued update, keeps the node's eligibility for /healthz, and
// remembers which resources have reported synced. ServiceCIDRs never hold up the start, as upstream.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { IPFamily, ProxyEventHandler, ProxyHealth } from '@kube-proxy-ts/core';
import type { ChangeKind, FamilyTracker } from './family-proxier.js';

export interface FanoutListener {
  changed(kind: ChangeKind, count?: number): void;
}

export class EventFanout implements ProxyEventHandler {
  private servicesSynced = false;
  private slicesSynced = false;
  private nodeSynced = false;
  private waiters: Array<() => void> = [];
  /** The latest Node object seen, if any. */
  node: V1Node | undefined;
  private readonly listeners = new Map<IPFamily, FanoutListener>();
  /** Changes seen before any family's proxier existed, replayed to each as it registers. */
  private readonly early = new Map<ChangeKind, number>();

  constructor(
    private readonly trackers: ReadonlyMap<IPFamily, FamilyTracker>,
    private readonly health: ProxyHealth,
  ) {}

  /** Families whose proxier exists get change notifications from now on. */
  listen(family: IPFamily, listener: FanoutListener): void {
    this.listeners.set(family, listener);
    for (const [kind, n] of this.early) listener.changed(kind, n);
  }

  get synced(): boolean {
    return this.servicesSynced && this.slicesSynced && this.nodeSynced;
  }

  /** Resolves once Services, EndpointSlices and the Node have all reported synced. */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private each(fn: (t: FamilyTracker) => void, kind: ChangeKind): void {
    for (const t of this.trackers.values()) fn(t);
    if (this.listeners.size === 0) this.early.set(kind, (this.early.get(kind) ?? 0) + 1);
    for (const l of this.listeners.values()) l.changed(kind);
  }

  private markSynced(): void {
    if (!this.synced) return;
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  onServiceAdd(s: V1Service): void {
    this.each((t) => t.onServiceAdd(s), 'service');
  }
  onServiceUpdate(o: V1Service, s: V1Service): void {
    this.each((t) => t.onServiceUpdate(o, s), 'service');
  }
  onServiceDelete(s: V1Service): void {
    this.each((t) => t.onServiceDelete(s), 'service');
  }
  onServicesSynced(): void {
    for (const t of this.trackers.values()) t.onServicesSynced();
    this.servicesSynced = true;
    this.markSynced();
  }
  onEndpointSliceAdd(s: V1EndpointSlice): void {
    this.each((t) => t.onEndpointSliceAdd(s), 'endpoints');
  }
  onEndpointSliceUpdate(o: V1EndpointSlice, s: V1EndpointSlice): void {
    this.each((t) => t.onEndpointSliceUpdate(o, s), 'endpoints');
  }
  onEndpointSliceDelete(s: V1EndpointSlice): void {
    this.each((t) => t.onEndpointSliceDelete(s), 'endpoints');
  }
  onEndpointSlicesSynced(): void {
    for (const t of this.trackers.values()) t.onEndpointSlicesSynced();
    this.slicesSynced = true;
    this.markSynced();
  }
  onNodeAdd(n: V1Node): void {
    this.node = n;
    this.health.syncNode(n);
    this.each((t) => t.onNodeAdd(n), 'node');
  }
  onNodeUpdate(o: V1Node, n: V1Node): void {
    this.node = n;
    this.health.syncNode(n);
    this.each((t) => t.onNodeUpdate(o, n), 'node');
  }
  onNodeDelete(n: V1Node): void {
    this.node = undefined;
    // A deleted node is no longer eligible for load-balancer traffic.
    this.health.nodeEligible = false;
    this.each((t) => t.onNodeDelete(n), 'node');
  }
  onNodeSynced(): void {
    for (const t of this.trackers.values()) t.onNodeSynced();
    this.nodeSynced = true;
    this.markSynced();
  }
  onServiceCIDRsChanged(cidrs: readonly string[]): void {
    this.each((t) => t.onServiceCIDRsChanged?.(cidrs), 'serviceCIDRs');
  }
}
