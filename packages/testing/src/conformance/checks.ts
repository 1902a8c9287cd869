// The backend conformance checks as plain async functions, free of any test runner: the vitest
// suite (suite.ts) registers them as tests, and runBackendConformance() runs them anywhere else
// (e.g. inside a VM on a real kernel). A failed check throws an Error with a readable account.

import type { BackendContext, BackendFactory, IPFamily } from '@kube-proxy-ts/core';
import { compareInspections } from './compare.js';
import { Harness, applyEvent, syncOrReport, type BackendInstance, type HarnessOptions, type StateTracker } from './harness.js';
import { checkPartialSync, formatPartialSyncReport, partialSyncOk } from './partial-sync.js';
import { Universe, type ConformanceEvent, type World } from './universe.js';

type MaybePromise<T> = T | Promise<T>;

/** The kinds of check, in the order they run. */
export const CONFORMANCE_CHECK_KINDS = ['restart', 'empty', 'addRemove', 'partialSync', 'cleanup'] as const;
export type ConformanceCheckKind = (typeof CONFORMANCE_CHECK_KINDS)[number];

export interface ConformanceOptions extends HarnessOptions {
  /** Seeds of the random partial-sync sequences, one check each. Default [1, 2, 3]. */
  seeds?: readonly number[];
  /** Syncs per random sequence. Default 12. */
  steps?: number;
  /** At most this many events between two syncs of a random sequence. Default 3. */
  maxEventsPerStep?: number;
  /** Which kinds of check to run. Default all. */
  checks?: readonly ConformanceCheckKind[];
  /**
   * State the backend does not own, put in place before it starts and checked after its
   * cleanup() (e.g. a rule in another chain, a table of another program). verify() throws or
   * fails an expectation when the state was touched.
   */
  foreignState?: {
    install(ctx: BackendContext): MaybePromise<void>;
    verify(ctx: BackendContext): MaybePromise<void>;
  };
  /** Run around the checks / each check, e.g. to create a network-namespace sandbox. */
  hooks?: {
    beforeAll?: () => MaybePromise<void>;
    afterAll?: () => MaybePromise<void>;
    beforeEach?: () => MaybePromise<void>;
    afterEach?: () => MaybePromise<void>;
  };
  /** Per check. Default 60 s. */
  timeoutMs?: number;
}

export interface ConformanceCheck {
  readonly kind: ConformanceCheckKind;
  readonly name: string;
  /** Without backend.inspect() the check cannot say anything and is skipped. */
  readonly needsInspect: boolean;
  run(): Promise<void>;
}

export interface BackendConformance {
  /** The backend's name (or the one given). */
  readonly name: string;
  readonly ipFamily: IPFamily;
  /** Whether the backend has inspect(); without it the data-plane comparisons are skipped. */
  readonly hasInspect: boolean;
  readonly checks: readonly ConformanceCheck[];
  /** Tears down every backend a check left open; to run after each check. */
  closeAll(): Promise<void>;
}

/** The names of the checks `options` selects, in order (what runBackendConformance reports). */
export function conformanceCheckNames(options: Pick<ConformanceOptions, 'seeds' | 'checks'> = {}): string[] {
  return selectedChecks(options).map((c) => c.name);
}

function selectedChecks(options: Pick<ConformanceOptions, 'seeds' | 'checks'>): { kind: ConformanceCheckKind; name: string; seed?: number }[] {
  const kinds = new Set(options.checks ?? CONFORMANCE_CHECK_KINDS);
  const all: { kind: ConformanceCheckKind; name: string; seed?: number }[] = [
    { kind: 'restart', name: 'start() is idempotent and a restart keeps what was programmed' },
    { kind: 'empty', name: 'syncs the empty state' },
    { kind: 'addRemove', name: 'adds and removes services and endpoints' },
    ...(options.seeds ?? [1, 2, 3]).map((seed) => ({
      kind: 'partialSync' as const,
      name: `partial syncs after random changes leave the data plane of one full sync (seed ${seed})`,
      seed,
    })),
    { kind: 'cleanup', name: 'cleanup() removes everything it created and nothing else' },
  ];
  return all.filter((c) => kinds.has(c.kind));
}

/** A failed check: the message says what differed or failed. */
export class ConformanceFailure extends Error {
  override readonly name = 'ConformanceFailure';
}

function fail(message: string): never {
  throw new ConformanceFailure(message);
}

function expectSame(a: unknown, b: unknown, labels: readonly [string, string], what: string): void {
  const differences = compareInspections(a, b, { labels });
  if (differences.length > 0) fail(`${what}:\n${differences.map((d) => `  ${d}`).join('\n')}`);
}

/**
 * The checks of `factory`'s backends against the contract: start() is idempotent, the empty
 * state syncs, services and endpoints can be added and removed, partial syncs after seeded
 * random change sequences end in the data plane one full sync of the final state produces,
 * and cleanup() removes everything and nothing else. Comparisons go through
 * `backend.inspect()`; without it they are skipped.
 */
export function backendConformance(factory: BackendFactory, options: ConformanceOptions = {}, name?: string): BackendConformance {
  if (typeof factory !== 'function') throw new TypeError('backend conformance: a BackendFactory is required');
  const harness = new Harness(factory, options);
  // Constructing a backend must not do I/O, so a probe instance can tell what it offers.
  const probe = factory({ ipFamily: harness.ipFamily, config: harness.config });
  const hasInspect = typeof probe.inspect === 'function';

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
    if (failure !== undefined) fail(`${what}: ${failure}`);
  }

  const inspect = (instance: BackendInstance) => harness.inspect(instance.backend);

  const bodies: Record<ConformanceCheckKind, (seed?: number) => Promise<void>> = {
    async restart() {
      const s = await setUp();
      await s.backend.start(s.ctx);
      applyEvent(s.world, s.tracker, { kind: 'upsertService', object: s.universe.plainService(0) });
      applyEvent(s.world, s.tracker, { kind: 'upsertSlice', object: s.universe.plainSlice(0) });
      await syncOk(s, s.tracker, 'sync after two start() calls');
      const before = hasInspect ? await inspect(s) : undefined;
      await s.backend.start(s.ctx);
      // Nothing changed since: an empty ChangeSet, as a periodic resync passes.
      await syncOk(s, s.tracker, 'resync after a third start()');
      if (hasInspect) expectSame(await inspect(s), before, ['after restart', 'before'], 'a restart changed the data plane');
    },

    async empty() {
      const s = await setUp();
      await syncOk(s, s.tracker, 'sync of the empty state');
      await syncOk(s, s.tracker, 'second sync of the empty state');
      if (hasInspect && typeof JSON.stringify(await inspect(s)) !== 'string') fail('inspect() must return a JSON-serialisable value');
    },

    async addRemove() {
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
        if (compareInspections(now, previous).length === 0) fail(`the data plane must change when we ${what}`);
        previous = now;
      }
      if (hasInspect) expectSame(previous, empty, ['after removing all', 'empty'], 'removing everything did not restore the empty data plane');
    },

    async partialSync(seed) {
      const report = await checkPartialSync(factory, { ...options, seed: seed! });
      if (!partialSyncOk(report)) fail(formatPartialSyncReport(report));
    },

    async cleanup() {
      let neverSynced: unknown;
      if (hasInspect) {
        // What cleanup must return to: a backend that started and never synced, cleaned up.
        const baseline = await harness.started();
        await baseline.backend.cleanup(baseline.ctx);
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
      await instance.backend.cleanup(instance.ctx);
      if (hasInspect) expectSame(await inspect(instance), neverSynced, ['after cleanup', 'never synced'], 'cleanup() left state behind');
      await instance.backend.cleanup(instance.ctx); // a second cleanup finds nothing and must not fail
      // kube-proxy --cleanup: a backend that never started cleans up in the context it is given.
      await harness.factory({ ipFamily: harness.ipFamily, config: harness.config }).cleanup(instance.ctx);
      await options.foreignState?.verify(instance.ctx);
    },
  };

  return {
    name: name ?? probe.name,
    ipFamily: harness.ipFamily,
    hasInspect,
    checks: selectedChecks(options).map((c) => ({
      kind: c.kind,
      name: c.name,
      needsInspect: c.kind === 'partialSync',
      run: () => bodies[c.kind](c.seed),
    })),
    closeAll: () => harness.closeAll(),
  };
}

export interface ConformanceResult {
  readonly kind: ConformanceCheckKind;
  readonly name: string;
  readonly status: 'pass' | 'fail' | 'skip';
  /** Why it failed or was skipped. */
  readonly message?: string;
  readonly durationMs: number;
}

export interface RunConformanceOptions extends ConformanceOptions {
  /** Overrides the backend's name in the results' context. */
  name?: string;
  /** Called as each check ends, e.g. to print progress. */
  onResult?: (result: ConformanceResult) => void;
}

/** Rejects after `ms` unless `p` settles first. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConformanceFailure(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the conformance checks one after another without a test runner, with the hooks around
 * them, and resolves with one result per check (it rejects only when a hook fails). A check's
 * failure message is the readable account the vitest suite shows.
 */
export async function runBackendConformance(factory: BackendFactory, options: RunConformanceOptions = {}): Promise<ConformanceResult[]> {
  const conformance = backendConformance(factory, options, options.name);
  const timeout = options.timeoutMs ?? 60_000;
  const { hooks } = options;
  const results: ConformanceResult[] = [];
  const report = (r: ConformanceResult) => {
    results.push(r);
    options.onResult?.(r);
  };
  await hooks?.beforeAll?.();
  try {
    for (const check of conformance.checks) {
      if (check.needsInspect && !conformance.hasInspect) {
        report({ kind: check.kind, name: check.name, status: 'skip', message: `backend ${conformance.name} has no inspect()`, durationMs: 0 });
        continue;
      }
      const t0 = Date.now();
      await hooks?.beforeEach?.();
      let failure: string | undefined;
      try {
        await within(check.run(), timeout, check.name);
      } catch (e) {
        failure = e instanceof Error ? e.message : String(e);
      }
      await conformance.closeAll();
      await hooks?.afterEach?.();
      report({ kind: check.kind, name: check.name, status: failure === undefined ? 'pass' : 'fail', ...(failure !== undefined ? { message: failure } : {}), durationMs: Date.now() - t0 });
    }
  } finally {
    await hooks?.afterAll?.();
  }
  return results;
}
