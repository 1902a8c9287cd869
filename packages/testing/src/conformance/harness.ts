// Shared plumbing of the conformance checks: creating backends with their contexts, feeding
// objects through core's ProxyStateTracker (so states and ChangeSets are the real ones), and
// tearing every backend down again.

import { ProxyStateTracker } from '@kube-proxy-ts/core';
import type {
  Backend,
  BackendContext,
  BackendFactory,
  ChangeSet,
  IPFamily,
  ProxyConfig,
  ProxyEventHandler,
  ProxyState,
} from '@kube-proxy-ts/core';
import { testContext } from '../test-context.js';
import { nodeInfo } from '../builders/node.js';
import { proxyConfig, type DeepPartial } from '../builders/proxy-config.js';
import type { ConformanceEvent, World } from './universe.js';

/** What produces states and change sets from events: core's ProxyStateTracker, or a stand-in. */
export interface StateTracker extends ProxyEventHandler {
  checkpoint(): { state: ProxyState; changes: ChangeSet };
}

export interface HarnessOptions {
  /** Default 'IPv4'. */
  ipFamily?: IPFamily;
  /** Deep-merged over core's defaultProxyConfig(). */
  config?: DeepPartial<ProxyConfig>;
  /**
   * The context of each backend instance the checks create (several per check). Default:
   * testContext() with a node of `ipFamily`. Contexts may share one data plane (a real
   * kernel namespace): instances are then used one at a time and cleaned up in between.
   */
  context?: () => BackendContext | Promise<BackendContext>;
  /**
   * Set when the contexts share one data plane (e.g. runners into the same network namespace):
   * then only one backend exists at a time, and partial syncs are compared with a full sync at
   * the end of each sequence only. Otherwise they are compared after every sync. Default false.
   */
  sharedDataPlane?: boolean;
  /** Replaces core's ProxyStateTracker (for tests of the kit itself). */
  tracker?: (options: { ipFamily: IPFamily; nodeName: string }) => StateTracker;
  /** Applied to every inspect() result before comparison (e.g. to drop counters). */
  normalizeInspect?: (picture: unknown) => unknown;
}

export interface BackendInstance {
  readonly backend: Backend;
  readonly ctx: BackendContext;
}

export class Harness {
  readonly ipFamily: IPFamily;
  readonly config: ProxyConfig;
  readonly sharedDataPlane: boolean;
  private readonly open: BackendInstance[] = [];

  constructor(
    readonly factory: BackendFactory,
    private readonly options: HarnessOptions = {},
  ) {
    this.ipFamily = options.ipFamily ?? 'IPv4';
    this.config = proxyConfig(options.config);
    this.sharedDataPlane = options.sharedDataPlane ?? false;
  }

  async context(): Promise<BackendContext> {
    if (this.options.context) return this.options.context();
    const addresses = this.ipFamily === 'IPv4' ? ['192.168.50.1'] : ['fd00:192:168:50::1'];
    return testContext({ node: nodeInfo({ ipFamily: this.ipFamily, addresses }) });
  }

  /** A new backend with a new context, not started yet; torn down by closeAll(). */
  async create(): Promise<BackendInstance> {
    const ctx = await this.context();
    const backend = this.factory({ ipFamily: this.ipFamily, config: this.config });
    const instance = { backend, ctx };
    this.open.push(instance);
    return instance;
  }

  /** A new backend, started. */
  async started(): Promise<BackendInstance> {
    const instance = await this.create();
    await instance.backend.start(instance.ctx);
    return instance;
  }

  /** Stops the backend and removes what it programmed (best effort; the cleanup check is separate). */
  async close(instance: BackendInstance): Promise<void> {
    const i = this.open.indexOf(instance);
    if (i < 0) return;
    this.open.splice(i, 1);
    await instance.backend.stop?.().catch(() => undefined);
    await instance.backend.cleanup(instance.ctx).catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    for (const instance of [...this.open].reverse()) await this.close(instance);
  }

  async inspect(backend: Backend): Promise<unknown> {
    if (!backend.inspect) throw new Error(`backend ${backend.name} has no inspect()`);
    const picture = await backend.inspect();
    return this.options.normalizeInspect ? this.options.normalizeInspect(picture) : picture;
  }

  newTracker(nodeName: string): StateTracker {
    const make = this.options.tracker ?? ((o) => new ProxyStateTracker(o));
    return make({ ipFamily: this.ipFamily, nodeName });
  }

  /** A tracker that has seen `world` as the initial list of every informer. */
  trackerFor(world: World, nodeName: string): StateTracker {
    const tracker = this.newTracker(nodeName);
    tracker.onNodeAdd(world.node);
    tracker.onServiceCIDRsChanged?.(world.serviceCIDRs);
    for (const s of world.services.values()) tracker.onServiceAdd(s);
    for (const s of world.slices.values()) tracker.onEndpointSliceAdd(s);
    tracker.onNodeSynced();
    tracker.onServicesSynced();
    tracker.onEndpointSlicesSynced();
    return tracker;
  }
}

/** Applies `event` to `world` and tells `tracker`, as an informer would (add vs update vs delete). */
export function applyEvent(world: World, tracker: ProxyEventHandler, event: ConformanceEvent): void {
  switch (event.kind) {
    case 'upsertService': {
      const name = event.object.metadata!.name!;
      const prev = world.services.get(name);
      if (prev) tracker.onServiceUpdate(prev, event.object);
      else tracker.onServiceAdd(event.object);
      world.services.set(name, event.object);
      return;
    }
    case 'deleteService': {
      const prev = world.services.get(event.name);
      if (!prev) return;
      tracker.onServiceDelete(prev);
      world.services.delete(event.name);
      return;
    }
    case 'upsertSlice': {
      const name = event.object.metadata!.name!;
      const prev = world.slices.get(name);
      if (prev) tracker.onEndpointSliceUpdate(prev, event.object);
      else tracker.onEndpointSliceAdd(event.object);
      world.slices.set(name, event.object);
      return;
    }
    case 'deleteSlice': {
      const prev = world.slices.get(event.name);
      if (!prev) return;
      tracker.onEndpointSliceDelete(prev);
      world.slices.delete(event.name);
      return;
    }
    case 'updateNode':
      tracker.onNodeUpdate(world.node, event.object);
      world.node = event.object;
      return;
    case 'setServiceCIDRs':
      tracker.onServiceCIDRsChanged?.(event.cidrs);
      world.serviceCIDRs = event.cidrs;
      return;
  }
}

/** Runs sync and turns a throw (which the contract forbids) into a failure message. */
export async function syncOrReport(backend: Backend, state: ProxyState, changes: ChangeSet): Promise<string | undefined> {
  try {
    const result = await backend.sync(state, changes);
    if (result.ok) return undefined;
    return `sync reported failure: ${result.error?.message ?? 'no error given'}`;
  } catch (e) {
    return `sync threw (it must report failures in its result instead): ${e instanceof Error ? e.message : String(e)}`;
  }
}
