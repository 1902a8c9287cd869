// Bounded-frequency runner, as upstream's: requests are coalesced, runs start at least
// minInterval apart, at least one run happens per maxInterval, a failed run is retried with
// backoff, and only one run is in flight at a time.

import type { Clock, Logger } from './contract.js';

export interface SyncRunnerOptions {
  /** Least time between the starts of two runs (ms); upstream's minSyncPeriod. */
  readonly minInterval: number;
  /** Most time between two runs (ms), even without requests; upstream's syncPeriod. */
  readonly maxInterval: number;
  /** First retry delay after a failed run (ms); doubled per consecutive failure, capped at maxInterval. Default: max(minInterval, 1000). */
  readonly retryInterval?: number;
  /** The work. Resolves true on success; false or a rejection counts as a failure. */
  readonly run: () => Promise<boolean>;
  readonly clock: Clock;
  readonly logger?: Logger;
}

export class SyncRunner {
  private readonly minInterval: number;
  private readonly maxInterval: number;
  private readonly retryInterval: number;
  private readonly runFn: () => Promise<boolean>;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;

  private started = false;
  private stopped = false;
  private requested = false;
  private inFlight: Promise<void> | undefined;
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

  /** Whether a run is executing now. */
  get running(): boolean {
    return this.inFlight !== undefined;
  }

  /** Stop scheduling; resolves once a run in flight has finished. No timer stays armed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.disarm();
    await this.inFlight;
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
    this.inFlight = this.execute().finally(() => {
      this.inFlight = undefined;
      this.schedule();
    });
  }

  private async execute(): Promise<void> {
    let ok: boolean;
    try {
      ok = (await this.runFn()) === true;
    } catch (err) {
      this.logger?.error({ err }, 'sync run threw');
      ok = false;
    }
    if (ok) {
      this.failures = 0;
      return;
    }
    const delay = Math.min(this.retryInterval * 2 ** this.failures, this.maxInterval);
    this.failures++;
    this.retryAt = this.clock.now() + delay;
    this.logger?.warn({ retryInMs: delay, failures: this.failures }, 'sync failed; retrying');
  }
}
