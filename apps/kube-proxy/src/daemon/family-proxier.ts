// One IP family's control loop: its change tracker, its backend and its SyncRunner. Events mark
// the family as having a queued update; each run takes a checkpoint, hands it to the backend and
// records the outcome in metrics, health and one debug log line.
//
// Health: from start() on, the first sync is a queued update, and a failed sync leaves its work
// queued, so a proxy that cannot program its rules turns unhealthy after the health timeout.
// A sync that outlives the runner's deadline counts as failed at the deadline; its changes are
// kept for the retry, which the runner starts only once the backend has returned, and whatever
// the backend returns that late is only logged.

import {
  categorizeEndpoints,
  externallyAccessible,
  SyncRunner,
  type Backend,
  type ChangeSet,
  type Clock,
  type IPFamily,
  type Logger,
  type ProxyEventHandler,
  type ProxyHealth,
  type ProxyState,
  type SyncResult,
} from '@kube-proxy-ts/core';
import { mergeChangeSets } from './change-set.js';
import type { DaemonMetrics } from './metrics.js';

/** What the daemon needs of core's ProxyStateTracker. */
export interface FamilyTracker extends ProxyEventHandler {
  isSynced(): boolean;
  checkpoint(): { state: ProxyState; changes: ChangeSet };
  pendingServiceChanges?(): unknown;
  pendingEndpointChanges?(): unknown;
}

export interface FamilyProxierOptions {
  readonly family: IPFamily;
  readonly tracker: FamilyTracker;
  readonly backend: Backend;
  /** ms */
  readonly minSyncPeriod: number;
  /** ms */
  readonly syncPeriod: number;
  /** ms a sync may take before it counts as failed; default: the SyncRunner's. */
  readonly syncDeadline?: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: DaemonMetrics;
  readonly health: ProxyHealth;
  /** Called after each successful sync with the state that was programmed. */
  readonly onSynced?: (state: ProxyState) => void;
  /** Told when each backend.sync returns, to record the conntrack cleanup it ran. */
  readonly conntrackReconciler?: { syncEnded(family: IPFamily): void };
}

export type ChangeKind = 'service' | 'endpoints' | 'node' | 'serviceCIDRs';

export class FamilyProxier {
  readonly family: IPFamily;
  private readonly runner: SyncRunner;
  private carried: ChangeSet | undefined;
  private started = false;
  private lastResult: SyncResult | undefined;
  private syncs = 0;
  private firstSyncDone = false;

  constructor(private readonly opts: FamilyProxierOptions) {
    this.family = opts.family;
    this.runner = new SyncRunner({
      minInterval: opts.minSyncPeriod,
      maxInterval: opts.syncPeriod,
      ...(opts.syncDeadline !== undefined ? { deadline: opts.syncDeadline } : {}),
      run: (signal) => this.syncOnce(signal),
      clock: opts.clock,
      logger: opts.logger,
    });
  }

  /** Something this family proxies changed: count it, mark the update queued, ask for a run. */
  changed(kind: ChangeKind, n = 1): void {
    const { metrics, family, clock, tracker } = this.opts;
    const labels = { ip_family: family };
    if (kind === 'service') metrics.serviceChangesTotal.inc(labels, n);
    if (kind === 'endpoints') metrics.endpointChangesTotal.inc(labels, n);
    metrics.serviceChangesPending.set(labels, count(tracker.pendingServiceChanges?.()));
    metrics.endpointChangesPending.set(labels, count(tracker.pendingEndpointChanges?.()));
    metrics.lastQueuedTimestamp.set(labels, clock.now() / 1000);
    this.opts.health.queued(family);
    if (this.started) this.runner.request();
  }

  /** Starts syncing; the first run happens at once. Call only once the sources are synced. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.opts.health.started(this.opts.family);
    this.runner.start();
    this.runner.request();
  }

  async stop(): Promise<void> {
    await this.runner.stop();
  }

  /** The outcome of the latest run, if any. */
  get last(): SyncResult | undefined {
    return this.lastResult;
  }

  get syncCount(): number {
    return this.syncs;
  }

  /**
   * One run: checkpoint, backend.sync, bookkeeping. Resolves false when the backend failed, or
   * when `signal` was aborted (the deadline passed) before the backend returned.
   */
  async syncOnce(signal?: AbortSignal): Promise<boolean> {
    const { backend, clock, metrics, family, logger, health } = this.opts;
    const labels = { ip_family: family };
    const started = clock.now();
    const { state, changes: fresh } = this.opts.tracker.checkpoint();
    const changes = this.carried ? mergeChangeSets(this.carried, fresh) : fresh;
    metrics.serviceChangesPending.set(labels, 0);
    metrics.endpointChangesPending.set(labels, 0);

    const onDeadline = () => {
      metrics.syncDeadlineExceeded.inc(labels);
      const reason: unknown = signal?.reason;
      this.failed({ ok: false, full: false, error: reason instanceof Error ? reason : new Error(String(reason)) }, started, changes);
    };
    signal?.addEventListener('abort', onDeadline, { once: true });
    let result: SyncResult;
    try {
      result = await backend.sync(state, changes);
    } catch (err) {
      result = { ok: false, full: false, error: err instanceof Error ? err : new Error(String(err)) };
    } finally {
      signal?.removeEventListener('abort', onDeadline);
      this.opts.conntrackReconciler?.syncEnded(family);
    }
    const finished = clock.now();
    if (signal?.aborted) {
      // Already counted as failed; its changes are carried whatever it did, so the retry covers them.
      logger.warn({ ipFamily: family, ok: result.ok, err: result.error, durationMs: finished - started }, 'A sync abandoned at its deadline returned; the retry applies its changes again');
      return false;
    }
    if (!result.ok) {
      this.failed(result, started, changes);
      return false;
    }
    this.observe(result, started, finished);
    this.carried = undefined;
    health.updated(family);
    metrics.lastTimestamp.set(labels, finished / 1000);
    for (const times of changes.lastChangeTriggerTimes.values()) {
      for (const t of times) if (t > 0 && finished >= t) metrics.networkProgramming.observe(labels, (finished - t) / 1000);
    }
    const noLocal = countNoLocalEndpoints(state);
    metrics.noLocalEndpoints.set({ traffic_policy: 'internal', ip_family: family }, noLocal.internal);
    metrics.noLocalEndpoints.set({ traffic_policy: 'external', ip_family: family }, noLocal.external);
    let endpoints = 0;
    for (const eps of state.endpoints.values()) endpoints += eps.length;
    if (!this.firstSyncDone) {
      // The one line an operator looks for at start-up (per-sync lines need -v=2).
      this.firstSyncDone = true;
      const services = new Set([...state.services.values()].map((sp) => `${sp.name.namespace}/${sp.name.name}`)).size;
      logger.info({ ipFamily: family, services, servicePorts: state.services.size, endpoints, durationMs: finished - started }, 'First sync done');
    }
    logger.debug(
      {
        ipFamily: family,
        full: result.full,
        durationMs: finished - started,
        servicePorts: state.services.size,
        endpoints,
        changedServicePorts: changes.servicePorts.size,
        nodeChanged: changes.nodeChanged,
        serviceCIDRsChanged: changes.serviceCIDRsChanged,
        ...result.stats,
      },
      'SyncProxyRules complete',
    );
    this.opts.onSynced?.(state);
    return true;
  }

  private observe(result: SyncResult, started: number, finished: number): void {
    const { metrics, family } = this.opts;
    const labels = { ip_family: family };
    const seconds = (finished - started) / 1000;
    this.lastResult = result;
    this.syncs++;
    metrics.syncDuration.observe(labels, seconds);
    (result.full ? metrics.syncFullDuration : metrics.syncPartialDuration).observe(labels, seconds);
  }

  /** A failed sync: its changes wait for the retry, and its work stays queued for health. */
  private failed(result: SyncResult, started: number, changes: ChangeSet): void {
    const { clock, family, logger, health } = this.opts;
    const finished = clock.now();
    this.observe(result, started, finished);
    this.carried = changes;
    // Even a periodic sync with no change pending: rules that cannot be written are not known to hold.
    health.queued(family);
    logger.error({ err: result.error, ipFamily: family, durationMs: finished - started, full: result.full }, 'Failed to sync proxy rules; will retry');
  }
}

/** Service ports with a Local traffic policy that have endpoints, but none on this node. */
export function countNoLocalEndpoints(state: ProxyState): { internal: number; external: number } {
  let internal = 0;
  let external = 0;
  for (const [key, sp] of state.services) {
    const eps = state.endpoints.get(key) ?? [];
    const c = categorizeEndpoints(sp, eps, state.node);
    if (!c.hasAnyEndpoints || c.localEndpoints.length > 0) continue;
    if (sp.internalPolicyLocal) internal++;
    if (sp.externalPolicyLocal && externallyAccessible(sp)) external++;
  }
  return { internal, external };
}

function count(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object') {
    if ('size' in v && typeof v.size === 'number') return v.size;
    if ('length' in v && typeof v.length === 'number') return v.length;
  }
  return 0;
}
