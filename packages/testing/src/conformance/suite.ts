// describeBackendConformance(): the vitest suite every backend runs, ours and third-party ones.

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BackendContext, BackendFactory } from '@kube-proxy-ts/core';
import { compareInspections } from './compare.js';
import { Harness, applyEvent, syncOrReport, type BackendInstance, type HarnessOptions, type StateTracker } from './harness.js';
import { checkPartialSync, formatPartialSyncReport, partialSyncOk } from './partial-sync.js';
import { Universe, type ConformanceEvent, type World } from './universe.js';

type MaybePromise<T> = T | Promise<T>;

export interface ConformanceOptions extends HarnessOptions {
  /** Seeds of the random partial-sync sequences, one test each. Default [1, 2, 3]. */
  seeds?: readonly number[];
  /** Syncs per random sequence. Default 12. */
  steps?: number;
  /**
   * State the backend does not own, put in place before it starts and checked after its
   * cleanup() (e.g. a rule in another chain, a table of another program). verify() throws or
   * fails an expectation when the state was touched.
   */
  foreignState?: {
    install(ctx: BackendContext): MaybePromise<void>;
    verify(ctx: BackendContext): MaybePromise<void>;
  };
  /** Run around the suite / each check, e.g. to create a network-namespace sandbox. */
  hooks?: {
    beforeAll?: () => MaybePromise<void>;
    afterAll?: () => MaybePromise<void>;
    beforeEach?: () => MaybePromise<void>;
    afterEach?: () => MaybePromise<void>;
  };
  /** Per check. Default 60 s. */
  timeoutMs?: number;
}

/**
 * Registers a `describe` block that checks `factory`'s backends against the contract:
 * start() is idempotent, the empty state syncs, services and endpoints can be added and
 * removed, partial syncs after seeded random change sequences end in the data plane one full
 * sync of the final state produces, and cleanup() removes everything and nothing else.
 * Comparisons go through `backend.inspect()`; without it they are skipped (with a message).
 */
export function describeBackendConformance(name: string, factory: BackendFactory, options?: ConformanceOptions): void;
export function describeBackendConformance(factory: BackendFactory, options?: ConformanceOptions): void;
export function describeBackendConformance(
  nameOrFactory: string | BackendFactory,
  factoryOrOptions?: BackendFactory | ConformanceOptions,
  maybeOptions?: ConformanceOptions,
): void {
  const factory = typeof nameOrFactory === 'function' ? nameOrFactory : (factoryOrOptions as BackendFactory);
  const options: ConformanceOptions =
    (typeof nameOrFactory === 'function' ? (factoryOrOptions as ConformanceOptions | undefined) : maybeOptions) ?? {};
  if (typeof factory !== 'function') throw new TypeError('describeBackendConformance: a BackendFactory is required');

  const harness = new Harness(factory, options);
  // Constructing a backend must not do I/O, so a probe instance can tell what it offers.
  const probe = factory({ ipFamily: harness.ipFamily, config: harness.config });
  const name = typeof nameOrFactory === 'string' ? nameOrFactory : probe.name;
  const hasInspect = typeof probe.inspect === 'function';
  const timeout = options.timeoutMs ?? 60_000;
  const seeds = options.seeds ?? [1, 2, 3];

  describe(`${name} backend conformance (${harness.ipFamily})`, () => {
    if (!hasInspect) {
      console.log(
        `[conformance] ${name}: the backend has no inspect(); skipping the data-plane comparisons ` +
          '(partial vs full sync, restart, cleanup completeness). Implement Backend.inspect() to enable them.',
      );
    }
    const { hooks } = options;
    if (hooks?.beforeAll) beforeAll(hooks.beforeAll, timeout);
    if (hooks?.beforeEach) beforeEach(hooks.beforeEach, timeout);
    afterEach(async () => {
      await harness.closeAll();
      await hooks?.afterEach?.();
    }, timeout);
    if (hooks?.afterAll) afterAll(hooks.afterAll, timeout);

    /** A started backend plus a tracker and a world it is fed from. */
    async function setUp(): Promise<BackendInstance & { universe: Universe; world: World; tracker: StateTracker }> {
      const instance = await harness.started();
      const universe = new Universe({ ipFamily: harness.ipFamily, node: instance.ctx.node });
      const world = universe.emptyWorld();
      return { ...instance, universe, world, tracker: harness.trackerFor(world, universe.nodeName) };
    }

    async function syncOk(instance: BackendInstance, tracker: StateTracker, what: string): Promise<void> {
      const { state, changes } = tracker.checkpoint();
      const failure = await syncOrReport(instance.backend, state, changes);
      expect(failure, `${what}: ${failure}`).toBeUndefined();
    }

    const inspect = (instance: BackendInstance) => harness.inspect(instance.backend);

    it(
      'start() is idempotent and a restart keeps what was programmed',
      async () => {
        const s = await setUp();
        await s.backend.start(s.ctx);
        applyEvent(s.world, s.tracker, { kind: 'upsertService', object: s.universe.plainService(0) });
        applyEvent(s.world, s.tracker, { kind: 'upsertSlice', object: s.universe.plainSlice(0) });
        await syncOk(s, s.tracker, 'sync after two start() calls');
        const before = hasInspect ? await inspect(s) : undefined;
        await s.backend.start(s.ctx);
        // Nothing changed since: an empty ChangeSet, as a periodic resync passes.
        await syncOk(s, s.tracker, 'resync after a third start()');
        if (hasInspect) {
          expect(compareInspections(await inspect(s), before, { labels: ['after restart', 'before'] })).toEqual([]);
        }
      },
      timeout,
    );

    it(
      'syncs the empty state',
      async () => {
        const s = await setUp();
        await syncOk(s, s.tracker, 'sync of the empty state');
        await syncOk(s, s.tracker, 'second sync of the empty state');
        if (hasInspect) {
          const picture = await inspect(s);
          expect(typeof JSON.stringify(picture), 'inspect() must return a JSON-serialisable value').toBe('string');
        }
      },
      timeout,
    );

    it(
      'adds and removes services and endpoints',
      async () => {
        const s = await setUp();
        await syncOk(s, s.tracker, 'sync of the empty state');
        const empty = hasInspect ? await inspect(s) : undefined;
        const steps: Array<[string, ConformanceEvent[]]> = [
          ['add a service and its endpoints', [
            { kind: 'upsertService', object: s.universe.plainService(0) },
            { kind: 'upsertSlice', object: s.universe.plainSlice(0) },
          ]],
          ['add a NodePort service with UDP and TCP ports', [
            { kind: 'upsertService', object: s.universe.plainService(1) },
            { kind: 'upsertSlice', object: s.universe.plainSlice(1) },
          ]],
          ['remove the first service\'s endpoints', [{ kind: 'deleteSlice', name: s.universe.plainSlice(0).metadata!.name! }]],
          ['remove the first service', [{ kind: 'deleteService', name: s.universe.plainService(0).metadata!.name! }]],
          ['remove the second service and its endpoints', [
            { kind: 'deleteSlice', name: s.universe.plainSlice(1).metadata!.name! },
            { kind: 'deleteService', name: s.universe.plainService(1).metadata!.name! },
          ]],
        ];
        let previous = empty;
        for (const [what, events] of steps) {
          for (const e of events) applyEvent(s.world, s.tracker, e);
          await syncOk(s, s.tracker, what);
          if (!hasInspect) continue;
          const now = await inspect(s);
          expect(compareInspections(now, previous), `the data plane must change when we ${what}`).not.toEqual([]);
          previous = now;
        }
        if (hasInspect) {
          expect(compareInspections(previous, empty, { labels: ['after removing all', 'empty'] })).toEqual([]);
        }
      },
      timeout,
    );

    for (const seed of seeds) {
      it.skipIf(!hasInspect)(
        `partial syncs after random changes leave the data plane of one full sync (seed ${seed})`,
        async () => {
          const report = await checkPartialSync(factory, { ...options, seed, ...(options.steps ? { steps: options.steps } : {}) });
          expect(partialSyncOk(report), formatPartialSyncReport(report)).toBe(true);
        },
        timeout,
      );
    }

    it(
      'cleanup() removes everything it created and nothing else',
      async () => {
        let neverSynced: unknown;
        if (hasInspect) {
          // What cleanup must return to: a backend that started and never synced, cleaned up.
          const baseline = await harness.started();
          await baseline.backend.cleanup();
          neverSynced = await inspect(baseline);
          await harness.close(baseline);
        }
        const instance = await harness.create();
        await options.foreignState?.install(instance.ctx);
        await instance.backend.start(instance.ctx);
        const universe = new Universe({ ipFamily: harness.ipFamily, node: instance.ctx.node });
        const world = universe.emptyWorld();
        for (let i = 0; i < universe.serviceCount; i++) {
          world.services.set(universe.plainService(i).metadata!.name!, universe.plainService(i));
          world.slices.set(universe.plainSlice(i).metadata!.name!, universe.plainSlice(i));
        }
        await syncOk(instance, harness.trackerFor(world, universe.nodeName), 'sync of every service');
        await instance.backend.cleanup();
        if (hasInspect) {
          const after = await inspect(instance);
          expect(compareInspections(after, neverSynced, { labels: ['after cleanup', 'never synced'] })).toEqual([]);
        }
        await instance.backend.cleanup(); // a second cleanup finds nothing and must not fail
        await options.foreignState?.verify(instance.ctx);
      },
      timeout,
    );
  });
}
