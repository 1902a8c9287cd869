// Jittered exponential backoff for restarting failed watches.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Up to this fraction of the delay is added at random, so many nodes do not retry in step. */
  jitter: number;
  random?: () => number;
}

export class Backoff {
  private failures = 0;

  constructor(private readonly options: BackoffOptions) {}

  /** The delay before the next attempt; each call counts one more consecutive failure. */
  next(): number {
    const { initialMs, maxMs, jitter } = this.options;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    const random = this.options.random ?? Math.random;
    return Math.round(base * (1 + jitter * random()));
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  reset(): void {
    this.failures = 0;
  }
}
