// The central conformance property: after any sequence of changes synced one checkpoint at a
// time (partial syncs), the data plane equals what one full sync of the final state writes
// into a backend that never saw the history.

import type { BackendFactory } from '@kube-proxy-ts/core';
import { compareInspections } from './compare.js';
import { Harness, applyEvent, syncOrReport, type HarnessOptions } from './harness.js';
import { Universe, describeEvent, seededRandom, type World } from './universe.js';

export interface PartialSyncOptions extends HarnessOptions {
  /** Seed of the random event sequence. */
  seed: number;
  /** Number of checkpoints synced. Default 12. */
  steps?: number;
  /** At most this many events between two syncs (at least 0, sometimes none). Default 3. */
  maxEventsPerStep?: number;
}

export interface PartialSyncReport {
  readonly seed: number;
  /** The event sequence, one line per event, grouped by sync ("sync 3: ..."). */
  readonly history: readonly string[];
  /** Syncs that failed or threw, with their step. */
  readonly syncFailures: readonly string[];
  /** Differences between the two data planes at the first sync where they differ; empty when they match. */
  readonly differences: readonly string[];
  /** inspect() after the partial syncs and after the single full sync. */
  readonly partial: unknown;
  readonly full: unknown;
}

/** True when the report shows neither a failed sync nor a difference. */
export function partialSyncOk(report: PartialSyncReport): boolean {
  return report.syncFailures.length === 0 && report.differences.length === 0;
}

/** A readable account of a failed report, for assertion messages. */
export function formatPartialSyncReport(report: PartialSyncReport): string {
  return [
    `seed ${report.seed}:`,
    ...groupFailures(report.syncFailures).map((f) => `  ${f}`),
    ...(report.differences.length ? ['  data plane after partial syncs differs from a full sync:'] : []),
    ...report.differences.map((d) => `    ${d}`),
    '  events:',
    ...report.history.map((h) => `    ${h}`),
  ].join('\n');
}

/** "sync 1: X", "sync 2: X" -> "syncs 1, 2: X", so a backend failing every time reads as one line. */
function groupFailures(failures: readonly string[]): string[] {
  const byMessage = new Map<string, string[]>();
  for (const f of failures) {
    const m = /^sync (\d+): (.*)$/s.exec(f);
    if (!m) {
      byMessage.set(f, []);
      continue;
    }
    const steps = byMessage.get(m[2]!) ?? [];
    steps.push(m[1]!);
    byMessage.set(m[2]!, steps);
  }
  return [...byMessage].map(([msg, steps]) =>
    steps.length === 0 ? msg : `${steps.length > 1 ? 'syncs' : 'sync'} ${steps.join(', ')}: ${msg}`,
  );
}

/**
 * Drives one backend through a seeded random sequence of Service / EndpointSlice / Node changes
 * (each checkpoint synced with its real ChangeSet) and compares its inspect() with that of a
 * fresh backend given one full sync of the same state: after every sync, or, with
 * `sharedDataPlane`, once at the end (two backends cannot coexist on one data plane). Stops
 * at the first difference. The backend must have inspect().
 */
export async function checkPartialSync(factory: BackendFactory, options: PartialSyncOptions): Promise<PartialSyncReport> {
  const harness = new Harness(factory, options);
  const steps = options.steps ?? 12;
  const maxEvents = options.maxEventsPerStep ?? 3;
  const rnd = seededRandom(options.seed);
  const history: string[] = [];
  const syncFailures: string[] = [];
  const report = (differences: string[], partial: unknown, full: unknown, step: number): PartialSyncReport => ({
    seed: options.seed,
    history,
    syncFailures,
    differences: differences.map((d) => `after sync ${step}: ${d}`),
    partial,
    full,
  });

  /** inspect() of a backend that never saw the history, after one sync of `world`. */
  const fullSyncOf = async (world: World, nodeName: string, step: number): Promise<unknown> => {
    const fresh = await harness.started();
    const { state, changes } = harness.trackerFor(world, nodeName).checkpoint();
    const failure = await syncOrReport(fresh.backend, state, changes);
    if (failure) syncFailures.push(`full sync of the state after sync ${step}: ${failure}`);
    const picture = await harness.inspect(fresh.backend);
    await harness.close(fresh);
    return picture;
  };

  try {
    const incremental = await harness.started();
    const universe = new Universe({ ipFamily: harness.ipFamily, node: incremental.ctx.node });
    const world = universe.emptyWorld();
    const tracker = harness.trackerFor(world, universe.nodeName);
    for (let step = 1; step <= steps; step++) {
      // Roughly one sync in eight has no events: a periodic resync with an empty ChangeSet.
      const count = rnd() < 0.125 ? 0 : 1 + Math.floor(rnd() * maxEvents);
      for (let k = 0; k < count; k++) {
        const event = universe.randomEvent(world, rnd);
        history.push(`sync ${step}: ${describeEvent(event)}`);
        applyEvent(world, tracker, event);
      }
      if (count === 0) history.push(`sync ${step}: (no events)`);
      const { state, changes } = tracker.checkpoint();
      const failure = await syncOrReport(incremental.backend, state, changes);
      if (failure) syncFailures.push(`sync ${step}: ${failure}`);
      if (harness.sharedDataPlane && step < steps) continue;

      const partial = await harness.inspect(incremental.backend);
      // On a shared data plane the fresh backend starts from a clean one.
      if (harness.sharedDataPlane) await harness.close(incremental);
      const full = await fullSyncOf(world, universe.nodeName, step);
      const differences = compareInspections(partial, full, { labels: ['partial', 'full'] });
      if (differences.length > 0 || step === steps) return report(differences, partial, full, step);
    }
    throw new Error('unreachable: the last step always reports');
  } finally {
    await harness.closeAll();
  }
}
