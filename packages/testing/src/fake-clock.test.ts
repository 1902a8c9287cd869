import { describe, expect, it } from 'vitest';
import { createFakeClock } from './fake-clock.js';

describe('createFakeClock', () => {
  it('only moves when advanced, and fires due timers in time order', () => {
    const clock = createFakeClock(1000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 200);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 100);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 500);
    expect(clock.now()).toBe(1000);
    expect(clock.pendingTimers()).toBe(3);
    expect(clock.nextTimerAt()).toBe(1100);
    clock.advance(250);
    expect(fired).toEqual(['a@1100', 'b@1200']);
    expect(clock.now()).toBe(1250);
    clock.advance(250);
    expect(fired).toEqual(['a@1100', 'b@1200', 'c@1500']);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('fires timers scheduled by timers when they fall due in the same advance', () => {
    const clock = createFakeClock();
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 30);
      clock.setTimeout(() => fired.push(clock.now()), 500);
    }, 10);
    clock.advance(100);
    expect(fired).toEqual([10, 40]);
    expect(clock.nextTimerAt()).toBe(510);
  });

  it('keeps insertion order for timers due at the same time, and honours clearTimeout', () => {
    const clock = createFakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('first'), 50);
    const h = clock.setTimeout(() => fired.push('cleared'), 50);
    clock.setTimeout(() => fired.push('second'), 50);
    clock.clearTimeout(h);
    clock.advance(50);
    expect(fired).toEqual(['first', 'second']);
  });

  it('advanceAsync lets async work started by a timer settle before the next timer', async () => {
    const clock = createFakeClock();
    const log: string[] = [];
    clock.setTimeout(() => {
      void Promise.resolve().then(() => {
        log.push('async work done');
        clock.setTimeout(() => log.push('follow-up timer'), 10);
      });
    }, 100);
    await clock.advanceAsync(200);
    expect(log).toEqual(['async work done', 'follow-up timer']);
    expect(clock.now()).toBe(200);
  });

  it('rejects negative durations', async () => {
    const clock = createFakeClock();
    expect(() => clock.advance(-1)).toThrow(/negative/);
    await expect(clock.advanceAsync(-1)).rejects.toThrow(/negative/);
  });
});
