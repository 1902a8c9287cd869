// Upstream's EndpointsChangeTracker with its EndpointSliceCache: the slices of each Service are
// cached by name (endpoints move between slices, so a slice's removal must not drop an endpoint
// another slice still lists), merged per service port, and compared with what the last checkout
// applied. Only a net difference in the merged endpoints is a pending change.

import type { V1EndpointSlice } from '@kubernetes/client-node';
import type { Logger } from './contract.js';
import { deepEqual } from './deep-equal.js';
import { endpointSliceToEndpoints, mergeEndpointSlices, type EndpointSliceConversion } from './endpoint-slice.js';
import type { Endpoint, IPFamily, ServicePortKey } from './model.js';
import { RefusedObjects } from './validation.js';

/** The endpoints of one Service, per service port. */
export type EndpointsMap = ReadonlyMap<ServicePortKey, readonly Endpoint[]>;

export interface EndpointsChange {
  /** `namespace/name` of the Service. */
  readonly service: string;
  readonly previous: EndpointsMap;
  readonly current: EndpointsMap;
  /** last-change-trigger-times (ms since epoch) of the slice updates behind this change. */
  readonly triggerTimes: readonly number[];
}

export interface EndpointsChangeTrackerOptions {
  readonly ipFamily: IPFamily;
  readonly nodeName: string;
  readonly proxyName?: string;
  readonly logger?: Logger;
  /** Shared by the trackers of both families, so that a refused slice is reported once. */
  readonly refused?: RefusedObjects;
  /**
   * Trigger times older than this (ms since epoch) are ignored: they describe changes made
   * before the proxy started, whose latency it cannot have caused. Default: none ignored.
   */
  readonly ignoreTriggerTimesBefore?: number;
}

interface ServiceSlices {
  /** The latest conversion of each slice of the Service, by `namespace/slice-name`. */
  readonly slices: Map<string, EndpointSliceConversion>;
  /** The merge of `slices`. */
  merged: EndpointsMap;
  /** What the last checkout applied. */
  applied: EndpointsMap;
  triggerTimes: number[];
}

const NONE: EndpointsMap = new Map();

export class EndpointsChangeTracker {
  private readonly opts: EndpointsChangeTrackerOptions;
  private readonly refused: RefusedObjects;
  private readonly services = new Map<string, ServiceSlices>();
  /** Services whose merged endpoints differ from the applied ones. */
  private readonly pending = new Set<string>();

  constructor(opts: EndpointsChangeTrackerOptions) {
    this.opts = opts;
    this.refused = opts.refused ?? new RefusedObjects();
  }

  /**
   * Records an add/update (`removed` false) or a delete of `slice`. Returns whether its Service's
   * endpoints now differ from what was last applied.
   */
  update(slice: V1EndpointSlice, removed: boolean): boolean {
    const { ipFamily, nodeName, proxyName, logger } = this.opts;
    const conv = endpointSliceToEndpoints(slice, ipFamily, { nodeName, proxyName });
    const news = this.refused.note(`EndpointSlice ${conv.slice}`, removed ? undefined : conv.invalid);
    if (logger) {
      if (conv.invalid && news) logger.warn({ endpointSlice: conv.slice, reason: conv.invalid }, 'Ignoring invalid EndpointSlice');
      if (conv.skipped && !conv.otherFamily) logger.debug({ endpointSlice: conv.slice, ipFamily, reason: conv.skipped }, 'Skipping EndpointSlice');
      for (const problem of conv.problems) logger.warn({ endpointSlice: conv.slice, ipFamily, problem }, 'Ignoring part of EndpointSlice');
    }
    // A slice that cannot name its Service cannot be merged anywhere.
    if (conv.service === undefined) return false;
    let entry = this.services.get(conv.service);
    if (!entry) {
      if (removed || conv.ports.length === 0) return false;
      entry = { slices: new Map(), merged: NONE, applied: NONE, triggerTimes: [] };
      this.services.set(conv.service, entry);
    }
    // Skipped and empty slices contribute nothing: forget them, as a delete would.
    if (removed || conv.ports.length === 0) entry.slices.delete(conv.slice);
    else entry.slices.set(conv.slice, conv);
    entry.merged = mergeEndpointSlices(entry.slices.values());

    const changed = !deepEqual(entry.merged, entry.applied);
    if (!changed) {
      this.pending.delete(conv.service);
      entry.triggerTimes = [];
      this.forgetIfEmpty(conv.service, entry);
      return false;
    }
    this.pending.add(conv.service);
    const t = conv.lastChangeTriggerTime;
    // A deleted slice's annotation dates its last update, not this change: not a latency sample.
    if (!removed && t !== undefined && t >= (this.opts.ignoreTriggerTimesBefore ?? -Infinity) && !entry.triggerTimes.includes(t)) {
      entry.triggerTimes.push(t);
    }
    return true;
  }

  /** How many Services have an endpoints change pending. */
  pendingCount(): number {
    return this.pending.size;
  }

  /** The pending changes, without applying them. */
  pendingChanges(): EndpointsChange[] {
    const out: EndpointsChange[] = [];
    for (const service of this.pending) {
      const e = this.services.get(service);
      if (e) out.push({ service, previous: e.applied, current: e.merged, triggerTimes: [...e.triggerTimes].sort((a, b) => a - b) });
    }
    return out;
  }

  /** Applies every pending change and returns them. */
  checkout(): EndpointsChange[] {
    const changes = this.pendingChanges();
    for (const { service } of changes) {
      const e = this.services.get(service);
      if (!e) continue;
      e.applied = e.merged;
      e.triggerTimes = [];
      this.forgetIfEmpty(service, e);
    }
    this.pending.clear();
    return changes;
  }

  private forgetIfEmpty(service: string, e: ServiceSlices): void {
    if (e.slices.size === 0 && e.applied.size === 0) this.services.delete(service);
  }
}
