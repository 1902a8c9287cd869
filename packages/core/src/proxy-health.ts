// The bookkeeping behind /healthz and /livez, as upstream's ProxyHealthServer: a proxy is
// unhealthy when an update has been queued for longer than the health timeout without a
// successful sync since. /healthz also fails when the node is going away; /livez does not.

import type { V1Node } from '@kubernetes/client-node';
import type { Clock } from './contract.js';
import type { IPFamily } from './model.js';
import { nodeEligible } from './node.js';

export interface ProxyHealthOptions {
  /** ms; upstream uses 2 x syncPeriod. */
  readonly healthTimeout: number;
  readonly clock: Clock;
}

export interface HealthStatus {
  readonly healthy: boolean;
  /** Newest successful sync of any family (clock ms); undefined before the first. */
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

  /** The proxy's own health, ignoring the node. */
  isHealthy(): boolean {
    return this.proxyHealth(this.clock.now());
  }

  /** /healthz: proxy health and node eligibility. */
  healthz(): HealthStatus {
    const currentTime = this.clock.now();
    const healthy = this.proxyHealth(currentTime) && this.eligible;
    return { healthy, lastUpdated: this.newestUpdate(), currentTime, nodeEligible: this.eligible };
  }

  /** /livez: proxy health only; a draining node is still alive. */
  livez(): HealthStatus {
    const currentTime = this.clock.now();
    return { healthy: this.proxyHealth(currentTime), lastUpdated: this.newestUpdate(), currentTime, nodeEligible: this.eligible };
  }

  private proxyHealth(now: number): boolean {
    for (const queuedAt of this.oldestPendingQueued.values()) {
      // An update waiting longer than the timeout means syncs are stuck or failing.
      if (now - queuedAt >= this.healthTimeout) return false;
    }
    return true;
  }

  private newestUpdate(): number | undefined {
    let newest: number | undefined;
    for (const t of this.lastUpdated.values()) if (newest === undefined || t > newest) newest = t;
    return newest;
  }
}
