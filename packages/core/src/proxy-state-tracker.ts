// The one ProxyEventHandler a control loop needs per IP family: it feeds Service and
// EndpointSlice events to the two change trackers, follows this node and the family's Service
// CIDRs, and at each checkpoint applies what is pending and returns the whole desired state plus
// what moved since the last one.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { ChangeSet, Clock, Logger, ProxyState, StaleUDPEndpoint } from './contract.js';
import { deepEqual } from './deep-equal.js';
import { EndpointsChangeTracker, type EndpointsChange } from './endpoints-change-tracker.js';
import type { ProxyEventHandler } from './handler.js';
import { parseCIDR } from './ip.js';
import type { Endpoint, IPFamily, NodeInfo, ServicePort, ServicePortKey } from './model.js';
import { emptyNodeInfo, nodeToNodeInfo } from './node.js';
import { ServiceChangeTracker, type ServiceChange } from './service-change-tracker.js';
import type { RefusedObjects } from './validation.js';

export interface ProxyStateTrackerOptions {
  readonly ipFamily: IPFamily;
  /** This node's name: its Node object is followed and endpoints on it are local. */
  readonly nodeName: string;
  /** Value of the service.kubernetes.io/service-proxy-name label this proxy answers to. */
  readonly proxyName?: string;
  readonly logger?: Logger;
  /** Shared by the trackers of both families, so that an object refused for its names is reported once. */
  readonly refused?: RefusedObjects;
  /**
   * Used only to ignore last-change-trigger-times older than the tracker (changes made before
   * the proxy started). Without a clock no trigger time is ignored.
   */
  readonly clock?: Clock;
}

export interface Checkpoint {
  readonly state: ProxyState;
  readonly changes: ChangeSet;
}

export class ProxyStateTracker implements ProxyEventHandler {
  readonly ipFamily: IPFamily;
  readonly nodeName: string;
  private readonly serviceTracker: ServiceChangeTracker;
  private readonly endpointsTracker: EndpointsChangeTracker;
  private readonly services = new Map<ServicePortKey, ServicePort>();
  private readonly endpoints = new Map<ServicePortKey, readonly Endpoint[]>();
  private node: NodeInfo;
  private appliedNode: NodeInfo;
  private serviceCIDRs: readonly string[] = [];
  private appliedServiceCIDRs: readonly string[] = [];
  /** Invalid Service CIDRs already logged: every ServiceCIDR event repeats the whole list. */
  private readonly reportedCIDRs = new Set<string>();
  private readonly logger: Logger | undefined;
  private servicesSynced = false;
  private slicesSynced = false;
  private nodeSynced = false;

  constructor(opts: ProxyStateTrackerOptions) {
    this.ipFamily = opts.ipFamily;
    this.nodeName = opts.nodeName;
    const logger = opts.logger;
    this.logger = logger;
    const refused = opts.refused;
    this.serviceTracker = new ServiceChangeTracker({ ipFamily: opts.ipFamily, proxyName: opts.proxyName, logger, refused });
    this.endpointsTracker = new EndpointsChangeTracker({
      ipFamily: opts.ipFamily,
      nodeName: opts.nodeName,
      proxyName: opts.proxyName,
      logger,
      refused,
      ignoreTriggerTimesBefore: opts.clock?.now(),
    });
    this.node = emptyNodeInfo(opts.nodeName);
    this.appliedNode = this.node;
  }

  onServiceAdd(service: V1Service): void {
    this.serviceTracker.update(undefined, service);
  }
  onServiceUpdate(oldService: V1Service, service: V1Service): void {
    this.serviceTracker.update(oldService, service);
  }
  onServiceDelete(service: V1Service): void {
    this.serviceTracker.update(service, undefined);
  }
  onServicesSynced(): void {
    this.servicesSynced = true;
  }

  onEndpointSliceAdd(slice: V1EndpointSlice): void {
    this.endpointsTracker.update(slice, false);
  }
  onEndpointSliceUpdate(_oldSlice: V1EndpointSlice, slice: V1EndpointSlice): void {
    this.endpointsTracker.update(slice, false);
  }
  onEndpointSliceDelete(slice: V1EndpointSlice): void {
    this.endpointsTracker.update(slice, true);
  }
  onEndpointSlicesSynced(): void {
    this.slicesSynced = true;
  }

  onNodeAdd(node: V1Node): void {
    this.setNode(node, false);
  }
  onNodeUpdate(_oldNode: V1Node, node: V1Node): void {
    this.setNode(node, false);
  }
  onNodeDelete(node: V1Node): void {
    this.setNode(node, true);
  }
  onNodeSynced(): void {
    this.nodeSynced = true;
  }

  /** Keeps the valid CIDRs of this family, canonical and sorted; the next checkpoint carries them. */
  onServiceCIDRsChanged(cidrs: readonly string[]): void {
    const mine = new Set<string>();
    for (const text of cidrs) {
      const cidr = parseCIDR(text);
      if (cidr) {
        if (cidr.family === this.ipFamily) mine.add(cidr.text);
      } else if (!this.reportedCIDRs.has(text)) {
        this.reportedCIDRs.add(text);
        this.logger?.warn({ cidr: text, ipFamily: this.ipFamily }, 'Ignoring invalid ServiceCIDR');
      }
    }
    this.serviceCIDRs = [...mine].sort();
  }

  /** Whether every source has delivered its initial list: only then is a sync meaningful. */
  isSynced(): boolean {
    return this.servicesSynced && this.slicesSynced && this.nodeSynced;
  }

  /** Number of Services with a change not yet checkpointed (upstream's service_changes_pending). */
  pendingServiceChanges(): number {
    return this.serviceTracker.pendingCount();
  }

  /** Number of Services whose endpoints changed since the last checkpoint (endpoint_changes_pending). */
  pendingEndpointChanges(): number {
    return this.endpointsTracker.pendingCount();
  }

  /** Whether the next checkpoint would report any change. */
  hasPendingChanges(): boolean {
    return (
      this.pendingServiceChanges() > 0 ||
      this.pendingEndpointChanges() > 0 ||
      !deepEqual(this.node, this.appliedNode) ||
      !deepEqual(this.serviceCIDRs, this.appliedServiceCIDRs)
    );
  }

  /** Applies everything pending; returns the full desired state and what moved since the last checkpoint. */
  checkpoint(): Checkpoint {
    const servicePorts = new Set<ServicePortKey>();
    const deletedUDPClusterIPs = new Set<string>();
    for (const change of this.serviceTracker.checkout()) this.applyServiceChange(change, servicePorts, deletedUDPClusterIPs);

    const staleUDPEndpoints: StaleUDPEndpoint[] = [];
    const newlyActiveUDPServices = new Set<ServicePortKey>();
    const lastChangeTriggerTimes = new Map<ServicePortKey, readonly number[]>();
    for (const change of this.endpointsTracker.checkout()) {
      const changed = this.applyEndpointsChange(change, staleUDPEndpoints, newlyActiveUDPServices);
      for (const key of changed) servicePorts.add(key);
      // One sample per Service and trigger time (as upstream), filed under its first changed port.
      const first = [...changed].sort()[0];
      if (first !== undefined && change.triggerTimes.length > 0) lastChangeTriggerTimes.set(first, change.triggerTimes);
    }

    const nodeChanged = !deepEqual(this.node, this.appliedNode);
    this.appliedNode = this.node;
    const serviceCIDRsChanged = !deepEqual(this.serviceCIDRs, this.appliedServiceCIDRs);
    this.appliedServiceCIDRs = this.serviceCIDRs;

    const state: ProxyState = {
      ipFamily: this.ipFamily,
      services: new Map(this.services),
      endpoints: new Map(this.endpoints),
      node: this.node,
      serviceCIDRs: this.serviceCIDRs,
    };
    const changes: ChangeSet = { servicePorts, nodeChanged, serviceCIDRsChanged, deletedUDPClusterIPs, staleUDPEndpoints, newlyActiveUDPServices, lastChangeTriggerTimes };
    return { state, changes };
  }

  private setNode(node: V1Node, deleted: boolean): void {
    // Informers may be scoped to our node, but a file source may hand us every node.
    if (node.metadata?.name !== this.nodeName) return;
    // A deleted Node keeps no labels or addresses, and takes no more load-balancer traffic.
    this.node = deleted ? Object.freeze({ ...emptyNodeInfo(this.nodeName), eligible: false }) : nodeToNodeInfo(node, this.ipFamily);
  }

  private applyServiceChange(change: ServiceChange, servicePorts: Set<ServicePortKey>, deletedUDPClusterIPs: Set<string>): void {
    for (const [key, prev] of change.previous) {
      const cur = change.current.get(key);
      if (cur && deepEqual(prev, cur)) continue;
      servicePorts.add(key);
      // Flows to a UDP ClusterIP that is gone (or moved) would otherwise stay pinned to old endpoints.
      if (prev.protocol === 'UDP' && (!cur || cur.clusterIP !== prev.clusterIP)) deletedUDPClusterIPs.add(prev.clusterIP);
      if (!cur) this.services.delete(key);
    }
    for (const [key, cur] of change.current) {
      if (!change.previous.has(key)) servicePorts.add(key);
      this.services.set(key, cur);
    }
  }

  /** Applies one Service's endpoints change; returns the service ports whose endpoints differ. */
  private applyEndpointsChange(change: EndpointsChange, stale: StaleUDPEndpoint[], newlyActive: Set<ServicePortKey>): Set<ServicePortKey> {
    const changed = new Set<ServicePortKey>();
    const keys = new Set([...change.previous.keys(), ...change.current.keys()]);
    for (const key of keys) {
      const prev = change.previous.get(key) ?? [];
      const cur = change.current.get(key) ?? [];
      if (deepEqual(prev, cur)) continue;
      changed.add(key);
      if (cur.length > 0) this.endpoints.set(key, cur);
      else this.endpoints.delete(key);
      if (!key.endsWith('/UDP')) continue;
      // An endpoint that served before and does not serve now (or is gone) leaves stale flows.
      const servingNow = new Set(cur.filter((ep) => ep.serving).map((ep) => ep.hostPort));
      for (const ep of prev) {
        if (ep.serving && !servingNow.has(ep.hostPort)) stale.push({ servicePort: key, endpoint: ep });
      }
      // A UDP service with no serving endpoint had its traffic rejected; those entries must go.
      if (servingNow.size > 0 && !prev.some((ep) => ep.serving)) newlyActive.add(key);
    }
    return changed;
  }
}
