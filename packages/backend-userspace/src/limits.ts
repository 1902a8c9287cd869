// Bounds on what clients can make the proxy hold. Every TCP connection costs two descriptors and
// a read buffer, every UDP session a descriptor: unbounded, a flood of clients at one service
// exhausts RLIMIT_NOFILE and the proxy stops serving every service. Counted per service port and
// in total; what is beyond a bound is refused at once, what is established keeps working.

/** Which bound refused a new connection or session (the `reason` label of the metric). */
export type LimitReached = 'service_port_limit' | 'total_limit';

/** A count with a ceiling. */
export class ConnectionBudget {
  private used = 0;

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`a connection limit must be a positive integer, got ${limit}`);
  }

  get inUse(): number {
    return this.used;
  }

  get full(): boolean {
    return this.used >= this.limit;
  }

  take(): void {
    this.used++;
  }

  give(): void {
    if (this.used > 0) this.used--;
  }
}

/** One listener's share: its own bound (per service port) and the total it shares with the others. */
export class ListenerBudget {
  private readonly own: ConnectionBudget;

  constructor(
    perServicePort: number,
    private readonly total: ConnectionBudget,
  ) {
    this.own = new ConnectionBudget(perServicePort);
  }

  get inUse(): number {
    return this.own.inUse;
  }

  /** The bound behind a refusal, for logs. */
  limitFor(reason: LimitReached): number {
    return reason === 'service_port_limit' ? this.own.limit : this.total.limit;
  }

  /**
   * Takes a slot for a new connection or session and returns a function that gives it back
   * (calling it again does nothing), or says which bound refused it.
   */
  admit(): (() => void) | LimitReached {
    if (this.own.full) return 'service_port_limit';
    if (this.total.full) return 'total_limit';
    this.own.take();
    this.total.take();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.own.give();
      this.total.give();
    };
  }
}

/** Refusals come in floods: the first one of a quiet period is a warning, the rest a count. */
export class RefusalLog {
  private lastWarned = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly warn: (fields: object, msg: string) => void,
    private readonly now: () => number,
    private readonly everyMs = 60_000,
  ) {}

  refused(reason: LimitReached, limit: number): void {
    const now = this.now();
    if (now - this.lastWarned < this.everyMs) {
      this.suppressed++;
      return;
    }
    this.warn({ reason, limit, refusedSinceLastWarning: this.suppressed }, 'connection limit reached: refusing new clients');
    this.lastWarned = now;
    this.suppressed = 0;
  }
}
