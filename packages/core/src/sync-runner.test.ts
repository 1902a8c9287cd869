import { describe, expect, it } from 'vitest';
import { SyncRunner } from './sync-runner.js';
import { testClock } from './test-fixtures.js';

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
  });
});
