// Bounded-frequency runner, as upstream's: requests are coalesced, runs start at least
// minInterval apart, at least one run happens per maxInterval, a failed run is retried with
// backoff, and only one run is in flight at a time.
//
// A run that outlives its deadline counts as failed at the deadline: its signal is aborted and
// the retry is scheduled with the usual backoff. The runner cannot cancel the work itself (a
// backend may be half-way through writing rules), so the next run waits until the abandoned one
// has settled; whatever that one returns afterwards is ignored. Waiting, rather than running the
// retry alongside, keeps two writers off the data plane, and the abandoned run's changes stay with
// the caller (see FamilyProxier), so the retry covers them whatever the late outcome was.

import type { Clock, Logger } from './contract.js';

/**
 * Default deadline of one run: 5 minutes, or maxInterval when that is longer. Longer than any
 * legitimate sync we have measured (a restarted daemon's full nftables sync of 10k services took
 * 130 s on a loaded 2-core machine) and than one kernel tool's own timeout (60-120 s), so only a
 * stuck sync reaches it; and never shorter than a sync period, the pace the runner keeps anyway.
 */
export function defaultSyncDeadline(maxInterval: number): number {
  return Math.max(maxInterval, 5 * 60_000);
}

/** The reason a run's signal is aborted with when the run passes its deadline. */
export class SyncDeadlineError extends Error {
  constructor(readonly deadlineMs: number) {
    super(`sync did not finish within its deadline of ${deadlineMs} ms`);
    this.name = 'SyncDeadlineError';
  }
}

export interface SyncRunnerOptions {
  /** Least time between the starts of two runs (ms); upstream's minSyncPeriod. */
  readonly minInterval: number;
  /** Most time between two runs (ms), even without requests; upstream's syncPeriod. */
  readonly maxInterval: number;
  /** First retry delay after a failed run (ms); doubled per consecutive failure, capped at maxInterval. Default: max(minInterval, 1000). */
  readonly retryInterval?: number;
  /** Most time one run may take (ms) before it counts as failed. Default: defaultSyncDeadline(maxInterval). */
  readonly deadline?: number;
  /**
   * The work. Resolves true on success; false or a rejection counts as a failure. `signal` is
   * aborted (with a SyncDeadlineError) when the run passes its deadline.
   */
  readonly run: (signal: AbortSignal) => Promise<boolean>;
  readonly clock: Clock;
  readonly logger?: Logger;
}

export class SyncRunner {
  private readonly minInterval: number;
  private readonly maxInterval: number;
  private readonly retryInterval: number;
  private readonly deadline: number;
  private readonly runFn: (signal: AbortSignal) => Promise<boolean>;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;

  private started = false;
  private stopped = false;
  private requested = false;
  private inFlight: Promise<void> | undefined;
  /** Settles when the run in flight has an outcome: it finished, or its deadline passed. */
  private decided: Promise<void> | undefined;
  /** Start of the last run; undefined before the first. */
  private lastRunAt: number | undefined;
  private startedAt = 0;
  private retryAt: number | undefined;
  private failures = 0;
  private timer: unknown;
  private timerAt: number | undefined;

  constructor(opts: SyncRunnerOptions) {
    if (!(opts.minInterval >= 0)) throw new RangeError(`minInterval must be >= 0, got ${opts.minInterval}`);
    if (!(opts.maxInterval > 0)) throw new RangeError(`maxInterval must be > 0, got ${opts.maxInterval}`);
    if (opts.minInterval > opts.maxInterval) throw new RangeError(`minInterval ${opts.minInterval} exceeds maxInterval ${opts.maxInterval}`);
    this.minInterval = opts.minInterval;
    this.maxInterval = opts.maxInterval;
    this.retryInterval = Math.min(opts.retryInterval ?? Math.max(opts.minInterval, 1000), opts.maxInterval);
    if (!(this.retryInterval > 0)) throw new RangeError(`retryInterval must be > 0, got ${opts.retryInterval}`);
    this.deadline = opts.deadline ?? defaultSyncDeadline(opts.maxInterval);
    if (!(this.deadline > 0)) throw new RangeError(`deadline must be > 0, got ${opts.deadline}`);
    this.runFn = opts.run;
    this.clock = opts.clock;
    this.logger = opts.logger;
  }

  /** Begin scheduling. A request made before start() runs as soon as it is allowed. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.startedAt = this.clock.now();
    this.schedule();
  }

  /** Ask for a run. Several requests before the run starts give one run. */
  request(): void {
    if (this.stopped) return;
    this.requested = true;
    this.schedule();
  }

  /** Whether a run is executing now (one abandoned at its deadline included, until it settles). */
  get running(): boolean {
    return this.inFlight !== undefined;
  }

  /**
   * Stop scheduling; resolves once a run in flight has finished or passed its deadline (a stuck
   * run must not hold up shutdown). No timer stays armed.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.disarm();
    await this.decided;
  }

  /** When the next run is due (clock ms), or undefined if none is scheduled. */
  nextRunAt(): number | undefined {
    return this.timerAt;
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = undefined;
  }

  /** Arms one timer for the earliest reason to run; never while a run is in flight. */
  private schedule(): void {
    if (!this.started || this.stopped || this.inFlight) return;
    const now = this.clock.now();
    const earliest = this.lastRunAt === undefined ? now : this.lastRunAt + this.minInterval;
    let due = (this.lastRunAt ?? this.startedAt) + this.maxInterval;
    if (this.requested) due = Math.min(due, earliest);
    if (this.retryAt !== undefined) due = Math.min(due, Math.max(this.retryAt, earliest));
    due = Math.max(due, now);
    if (this.timer !== undefined && this.timerAt === due) return;
    this.disarm();
    this.timerAt = due;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      this.runNow();
    }, due - now);
  }

  private runNow(): void {
    if (this.stopped || this.inFlight) return;
    this.requested = false;
    this.retryAt = undefined;
    this.lastRunAt = this.clock.now();
    const controller = new AbortController();
    let settle!: () => void;
    this.decided = new Promise<void>((resolve) => (settle = resolve));
    let outcomeKnown = false;
    const decide = (ok: boolean, deadlinePassed = false) => {
      if (outcomeKnown) return;
      outcomeKnown = true;
      this.clock.clearTimeout(deadlineTimer);
      this.recordOutcome(ok, deadlinePassed);
      settle();
    };
    // decide() runs only from this timer or once the run settles, both after this line.
    const deadlineTimer = this.clock.setTimeout(() => {
      controller.abort(new SyncDeadlineError(this.deadline));
      decide(false, true);
    }, this.deadline);
    this.inFlight = this.execute(controller.signal)
      .then((ok) => decide(ok))
      .finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
  }

  private async execute(signal: AbortSignal): Promise<boolean> {
    try {
      return (await this.runFn(signal)) === true;
    } catch (err) {
      this.logger?.error({ err }, 'sync run threw');
      return false;
    }
  }

  private recordOutcome(ok: boolean, deadlinePassed: boolean): void {
    if (ok) {
      this.failures = 0;
      return;
    }
    const delay = Math.min(this.retryInterval * 2 ** this.failures, this.maxInterval);
    this.failures++;
    this.retryAt = this.clock.now() + delay;
    if (deadlinePassed) this.logger?.warn({ retryInMs: delay, failures: this.failures, deadlineMs: this.deadline }, 'sync passed its deadline: counted as failed; the retry waits for it to return');
    else this.logger?.warn({ retryInMs: delay, failures: this.failures }, 'sync failed; retrying');
  }
}
