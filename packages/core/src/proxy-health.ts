// The bookkeeping behind /healthz and /livez, as upstream's ProxyHealthServer: a proxy is
// unhealthy when an update has been queued for longer than the health timeout without a
// successful sync since. /healthz also fails when the node is going away; /livez does not.
// As upstream, a family is only judged once its control loop has started: while informers are
// still listing, queued updates do not count. Unlike upstream, whose loop only marks itself
// updated at start, the first sync counts as a queued update (started()), so that a proxy whose
// syncs never succeed turns unhealthy instead of staying healthy until some later change.

import type { V1Node } from '@kubernetes/client-node';
import type { Clock } from './contract.js';
import type { IPFamily } from './model.js';
import { nodeEligible } from './node.js';

export interface ProxyHealthOptions {
  /** ms; upstream kube-proxy passes 2 x syncPeriod. */
  readonly healthTimeout: number;
  readonly clock: Clock;
}

export interface HealthStatus {
  readonly healthy: boolean;
  /**
   * When healthy: the newest successful sync of any family; when not: that of the family found
   * late (clock ms). Undefined before the first updated().
   */
  readonly lastUpdated: number | undefined;
  /** Clock ms at the time of the check. */
  readonly currentTime: number;
  readonly nodeEligible: boolean;
}

/** Family key for single-family callers. */
const DEFAULT_FAMILY = 'IPv4';

export class ProxyHealth {
  private readonly healthTimeout: number;
  private readonly clock: Clock;
  private readonly lastUpdated = new Map<IPFamily, number>();
  private readonly oldestPendingQueued = new Map<IPFamily, number>();
  private eligible = true;

  constructor(opts: ProxyHealthOptions) {
    this.healthTimeout = opts.healthTimeout;
    this.clock = opts.clock;
  }

  /** An update arrived that a sync has yet to apply (keeps the oldest pending time). */
  queued(family: IPFamily = DEFAULT_FAMILY): void {
    if (!this.oldestPendingQueued.has(family)) this.oldestPendingQueued.set(family, this.clock.now());
  }

  /**
   * The control loop of `family` starts: it is judged from now on, and its first sync is an
   * update queued now. Updates queued while the informers were listing are superseded by it.
   */
  started(family: IPFamily = DEFAULT_FAMILY): void {
    const now = this.clock.now();
    this.lastUpdated.set(family, now);
    this.oldestPendingQueued.set(family, now);
  }

  /** A sync of `family` succeeded: nothing is pending any more. */
  updated(family: IPFamily = DEFAULT_FAMILY): void {
    this.oldestPendingQueued.delete(family);
    this.lastUpdated.set(family, this.clock.now());
  }

  /** Follows the node: not eligible once it is being deleted or tainted for removal. */
  syncNode(node: V1Node | undefined): void {
    this.eligible = node === undefined ? false : nodeEligible(node);
  }

  get nodeEligible(): boolean {
    return this.eligible;
  }

  set nodeEligible(value: boolean) {
    this.eligible = value;
  }

  /** The proxy's own health, ignoring the node (upstream IsHealthy). */
  isHealthy(): boolean {
    return this.check(this.clock.now()).healthy;
  }

  /** /healthz: proxy health and node eligibility. */
  healthz(): HealthStatus {
    const currentTime = this.clock.now();
    const { healthy, lastUpdated } = this.check(currentTime);
    return { healthy: healthy && this.eligible, lastUpdated, currentTime, nodeEligible: this.eligible };
  }

  /** /livez: proxy health only; a draining node is still alive. */
  livez(): HealthStatus {
    const currentTime = this.clock.now();
    const { healthy, lastUpdated } = this.check(currentTime);
    return { healthy, lastUpdated, currentTime, nodeEligible: this.eligible };
  }

  private check(now: number): { healthy: boolean; lastUpdated: number | undefined } {
    let newest: number | undefined;
    for (const [family, updatedAt] of this.lastUpdated) {
      if (newest === undefined || updatedAt > newest) newest = updatedAt;
      const queuedAt = this.oldestPendingQueued.get(family);
      // An update waiting for the whole timeout means syncs are stuck or failing.
      if (queuedAt !== undefined && now - queuedAt >= this.healthTimeout) return { healthy: false, lastUpdated: updatedAt };
    }
    return { healthy: true, lastUpdated: newest };
  }
}
