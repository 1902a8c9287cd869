// A Clock whose time only moves when the test says so.

import type { Clock } from '@kube-proxy-ts/core';

export interface FakeClock extends Clock {
  /** Move time forward by `ms`, firing due timers in order (timers they schedule too, if due). */
  advance(ms: number): void;
  /**
   * Like advance(), but lets promise callbacks run after each timer fires, so async work a
   * timer starts (a sync run, a retry) settles before the next timer is considered.
   */
  advanceAsync(ms: number): Promise<void>;
  /** Timers scheduled and not yet fired or cleared. */
  pendingTimers(): number;
  /** When the next timer fires, or undefined. */
  nextTimerAt(): number | undefined;
}

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** Lets queued promise callbacks and I/O callbacks run. */
export function flushPromises(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function createFakeClock(startMs = 0): FakeClock {
  let now = startMs;
  let nextId = 1;
  const timers = new Map<number, Timer>();

  function nextDue(until: number): Timer | undefined {
    let best: Timer | undefined;
    for (const t of timers.values()) {
      if (t.at <= until && (!best || t.at < best.at || (t.at === best.at && t.id < best.id))) best = t;
    }
    return best;
  }

  function fire(t: Timer) {
    timers.delete(t.id);
    now = t.at;
    t.fn();
  }

  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { id, at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      if (ms < 0) throw new Error('FakeClock.advance: negative duration');
      const until = now + ms;
      for (let t = nextDue(until); t; t = nextDue(until)) fire(t);
      now = until;
    },
    async advanceAsync(ms) {
      if (ms < 0) throw new Error('FakeClock.advanceAsync: negative duration');
      const until = now + ms;
      await flushPromises();
      for (let t = nextDue(until); t; t = nextDue(until)) {
        fire(t);
        await flushPromises();
      }
      now = until;
    },
    pendingTimers: () => timers.size,
    nextTimerAt() {
      let at: number | undefined;
      for (const t of timers.values()) if (at === undefined || t.at < at) at = t.at;
      return at;
    },
  };
}
