// A sync of thousands of Services can take many seconds; an operator watching the log should see
// it move. Backends that write in several transactions report after each one; a line is logged
// only once a sync has run for `everyMs`, and then at most once per `everyMs`.

import type { Clock, Logger } from './contract.js';

/** How often a long sync says how far it got (ms). */
export const SYNC_PROGRESS_INTERVAL_MS = 5000;

export class SyncProgress {
  private readonly started: number;
  private lastLogged: number;

  constructor(
    private readonly logger: Logger,
    private readonly clock: Pick<Clock, 'now'>,
    /** Service ports this sync writes. */
    private readonly total: number,
    private readonly everyMs = SYNC_PROGRESS_INTERVAL_MS,
  ) {
    this.started = clock.now();
    this.lastLogged = this.started;
  }

  /** `written` service ports of `total` are in the kernel now. */
  written(written: number): void {
    const now = this.clock.now();
    if (now - this.lastLogged < this.everyMs || written >= this.total) return;
    this.lastLogged = now;
    this.logger.info({ written, of: this.total, elapsedMs: now - this.started }, 'Sync in progress: Services written');
  }
}
