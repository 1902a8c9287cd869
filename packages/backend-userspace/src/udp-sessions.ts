// UDP has no connections: the proxy keeps one session (a socket towards the chosen endpoint)
// per client address, and closes it after a quiet period. One timer per session, re-armed only
// when it fires, so busy sessions cost no timer churn.

import type { Clock } from '@kube-proxy-ts/core';

export interface Closable {
  close(): void;
}

interface Entry<S> {
  readonly session: S;
  lastActive: number;
  timer: unknown;
}

export class UdpSessionTable<S extends Closable> {
  private readonly sessions = new Map<string, Entry<S>>();

  constructor(
    private readonly idleTimeoutMs: number,
    private readonly clock: Clock,
    /** Called after an idle session was closed and removed. */
    private readonly onExpire?: (key: string, session: S) => void,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  get(key: string): S | undefined {
    return this.sessions.get(key)?.session;
  }

  /** Adds a session; an existing one under the same key is closed first. */
  add(key: string, session: S): S {
    this.delete(key);
    const entry: Entry<S> = { session, lastActive: this.clock.now(), timer: undefined };
    this.sessions.set(key, entry);
    this.arm(key, entry, this.idleTimeoutMs);
    return session;
  }

  *values(): Generator<S> {
    for (const entry of this.sessions.values()) yield entry.session;
  }

  /** Records traffic in either direction: the idle period starts again. */
  touch(key: string): void {
    const entry = this.sessions.get(key);
    if (entry) entry.lastActive = this.clock.now();
  }

  /** Closes and removes one session. */
  delete(key: string): boolean {
    const entry = this.sessions.get(key);
    if (!entry) return false;
    this.sessions.delete(key);
    this.clock.clearTimeout(entry.timer);
    entry.session.close();
    return true;
  }

  /** Closes and removes every session for which `match` is true; returns how many. */
  deleteWhere(match: (session: S, key: string) => boolean): number {
    let removed = 0;
    for (const [key, entry] of [...this.sessions]) {
      if (match(entry.session, key) && this.delete(key)) removed++;
    }
    return removed;
  }

  closeAll(): void {
    for (const key of [...this.sessions.keys()]) this.delete(key);
  }

  private arm(key: string, entry: Entry<S>, delayMs: number): void {
    entry.timer = this.clock.setTimeout(() => this.check(key, entry), delayMs);
  }

  private check(key: string, entry: Entry<S>): void {
    if (this.sessions.get(key) !== entry) return;
    const remaining = entry.lastActive + this.idleTimeoutMs - this.clock.now();
    if (remaining > 0) {
      this.arm(key, entry, remaining);
      return;
    }
    this.sessions.delete(key);
    entry.session.close();
    this.onExpire?.(key, entry.session);
  }
}
