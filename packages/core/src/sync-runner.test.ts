import { describe, expect, it } from 'vitest';
import { SyncDeadlineError, SyncRunner } from './sync-runner.js';
import { testClock } from './builders.test-support.js';

function setup(opts: { minInterval?: number; maxInterval?: number; retryInterval?: number; results?: (boolean | 'throw')[]; runMs?: number } = {}) {
  const clock = testClock(0);
  const runs: number[] = [];
  const results = [...(opts.results ?? [])];
  const runner = new SyncRunner({
    minInterval: opts.minInterval ?? 1000,
    maxInterval: opts.maxInterval ?? 30_000,
    retryInterval: opts.retryInterval,
    clock,
    run: async () => {
      runs.push(clock.now());
      const r = results.shift() ?? true;
      if (opts.runMs) await new Promise<void>((resolve) => clock.setTimeout(resolve, opts.runMs!));
      if (r === 'throw') throw new Error('boom');
      return r;
    },
  });
  return { clock, runs, runner };
}

describe('SyncRunner', () => {
  it('runs at once on the first request, then keeps minInterval between runs', async () => {
    const { clock, runs, runner } = setup();
    runner.start();
    runner.request();
    await clock.advance(0);
    expect(runs).toEqual([0]);
    await clock.advance(200);
    runner.request();
    await clock.advance(500);
    expect(runs).toEqual([0]);
    await clock.advance(300);
    expect(runs).toEqual([0, 1000]);
    await runner.stop();
  });

  it('coalesces requests made before the next allowed run into one run', async () => {
    const { clock, runs, runner } = setup();
    runner.start();
    runner.request();
    await clock.advance(10);
    for (let i = 0; i < 50; i++) runner.request();
    await clock.advance(5000);
    expect(runs).toEqual([0, 1000]);
    await runner.stop();
  });

  it('runs at least once per maxInterval without requests', async () => {
    const { clock, runs, runner } = setup({ maxInterval: 10_000 });
    runner.start();
    await clock.advance(35_000);
    expect(runs).toEqual([10_000, 20_000, 30_000]);
    await runner.stop();
  });

  it('never overlaps runs: a request during a run is served after it, minInterval after its start', async () => {
    const { clock, runs, runner } = setup({ runMs: 1500 });
    runner.start();
    runner.request();
    await clock.advance(100);
    runner.request();
    await clock.advance(1300);
    expect(runs).toEqual([0]);
    await clock.advance(200);
    // The first run ended at 1500 (> minInterval after its start), so the next one starts right away.
    expect(runs).toEqual([0, 1500]);
    const stopped = runner.stop();
    await clock.advance(1500);
    await stopped;
  });

  it('retries a failed run (false or a throw) with doubling backoff, capped at maxInterval', async () => {
    const { clock, runs, runner } = setup({ minInterval: 0, maxInterval: 10_000, retryInterval: 1000, results: [false, 'throw', false, false, false, true] });
    runner.start();
    runner.request();
    await clock.advance(40_000);
    // Waits of 1, 2, 4, 8 s, then 16 s capped to maxInterval (10 s); the 6th run succeeds.
    expect(runs.slice(0, 6)).toEqual([0, 1000, 3000, 7000, 15_000, 25_000]);
    // After the success only the periodic run remains.
    expect(runs[6]).toBe(35_000);
    await runner.stop();
  });

  it('a request after a failure is still held to minInterval', async () => {
    const { clock, runs, runner } = setup({ minInterval: 2000, retryInterval: 5000, results: [false] });
    runner.start();
    runner.request();
    await clock.advance(100);
    runner.request();
    await clock.advance(3000);
    expect(runs).toEqual([0, 2000]);
    await runner.stop();
  });

  it('leaves no timer behind after stop(), and ignores requests afterwards', async () => {
    const { clock, runs, runner } = setup({ runMs: 500 });
    runner.start();
    runner.request();
    await clock.advance(100);
    const stopped = runner.stop();
    await clock.advance(500);
    await stopped;
    runner.request();
    await clock.advance(60_000);
    expect(runs).toEqual([0]);
    expect(clock.pending()).toBe(0);
  });

  it('a request before start() runs as soon as it starts', async () => {
    const { clock, runs, runner } = setup();
    runner.request();
    await clock.advance(5000);
    expect(runs).toEqual([]);
    runner.start();
    await clock.advance(0);
    expect(runs).toEqual([5000]);
    await runner.stop();
  });

  it('rejects inconsistent intervals', () => {
    const clock = testClock();
    const run = async () => true;
    expect(() => new SyncRunner({ minInterval: 5, maxInterval: 1, run, clock })).toThrow(RangeError);
    expect(() => new SyncRunner({ minInterval: -1, maxInterval: 1, run, clock })).toThrow(RangeError);
    expect(() => new SyncRunner({ minInterval: 0, maxInterval: 0, run, clock })).toThrow(RangeError);
    expect(() => new SyncRunner({ minInterval: 0, maxInterval: 1, deadline: 0, run, clock })).toThrow(RangeError);
  });
});

/** A runner whose runs each wait for the test to settle them by hand. */
function manualRuns(opts: { deadline?: number; maxInterval?: number; retryInterval?: number } = {}) {
  const clock = testClock(0);
  const runs: { at: number; signal: AbortSignal; settle: (ok: boolean) => void }[] = [];
  const runner = new SyncRunner({
    minInterval: 0,
    maxInterval: opts.maxInterval ?? 30_000,
    retryInterval: opts.retryInterval ?? 1000,
    deadline: opts.deadline,
    clock,
    run: (signal) => new Promise<boolean>((settle) => runs.push({ at: clock.now(), signal, settle })),
  });
  return { clock, runs, runner };
}

describe('SyncRunner deadline', () => {
  it('counts a run that never finishes as failed at its deadline, and retries only once it has settled', async () => {
    const { clock, runs, runner } = manualRuns({ deadline: 10_000, retryInterval: 1000 });
    runner.start();
    runner.request();
    await clock.advance(9_999);
    expect(runs[0]?.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(runs[0]?.signal.aborted).toBe(true);
    expect(runs[0]?.signal.reason).toBeInstanceOf(SyncDeadlineError);

    // The retry was due at 11 s, and requests keep coming, but the abandoned run may still be
    // writing: nothing runs alongside it.
    runner.request();
    await clock.advance(9_000);
    expect(runs.map((r) => r.at)).toEqual([0]);
    expect(runner.running).toBe(true);

    // A late success does not count: the retry runs as soon as the abandoned run settles.
    runs[0]?.settle(true);
    await clock.advance(0);
    expect(runs.map((r) => r.at)).toEqual([0, 19_000]);
    // ... and the backoff kept counting: the retry failing waits 2 s, not 1 s.
    runs[1]?.settle(false);
    await clock.advance(1_999);
    expect(runs).toHaveLength(2);
    await clock.advance(1);
    expect(runs.map((r) => r.at)).toEqual([0, 19_000, 21_000]);
    runs[2]?.settle(true);
    await runner.stop();
  });

  it('leaves a run alone while it is within the deadline, and clears the deadline timer when it ends', async () => {
    const { clock, runs, runner } = manualRuns({ deadline: 10_000, maxInterval: 60_000 });
    runner.start();
    runner.request();
    await clock.advance(9_000);
    runs[0]?.settle(true);
    await clock.advance(0);
    expect(runs[0]?.signal.aborted).toBe(false);
    // Only the periodic run is armed.
    expect(clock.pending()).toBe(1);
    expect(runner.nextRunAt()).toBe(60_000);
    await runner.stop();
  });

  it('defaults to 5 minutes, or maxInterval when that is longer', async () => {
    for (const [maxInterval, expected] of [
      [30_000, 300_000],
      [600_000, 600_000],
    ] as const) {
      const { clock, runs, runner } = manualRuns({ maxInterval });
      runner.start();
      runner.request();
      await clock.advance(expected - 1);
      expect(runs[0]?.signal.aborted).toBe(false);
      await clock.advance(1);
      expect(runs[0]?.signal.aborted).toBe(true);
      await runner.stop();
    }
  });

  it('stop() does not wait past the deadline for a run that never settles', async () => {
    const { clock, runs, runner } = manualRuns({ deadline: 5_000 });
    runner.start();
    runner.request();
    await clock.advance(100);
    let stopped = false;
    void runner.stop().then(() => (stopped = true));
    await clock.advance(4_000);
    expect(stopped).toBe(false);
    await clock.advance(900);
    expect(stopped).toBe(true);
    expect(runs).toHaveLength(1);
    expect(clock.pending()).toBe(0);
  });
});
