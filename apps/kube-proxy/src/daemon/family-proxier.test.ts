import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ProxyHealth, ProxyStateTracker, type ChangeSet, type ProxyState, type SyncResult } from '@kube-proxy-ts/core';
import { createFakeClock, createTestLogger, RecordingBackend, service } from '@kube-proxy-ts/testing';
import { FamilyProxier } from './family-proxier.js';
import { daemonMetrics } from './metrics.js';

const SYNC_PERIOD = 30_000;
const HEALTH_TIMEOUT = 2 * SYNC_PERIOD;

/**
 * A RecordingBackend whose syncs, while `hang` is set, only return when the test releases them
 * (and are recorded in `syncs` when they return).
 */
class HangingBackend extends RecordingBackend {
  hang = false;
  private readonly held: Array<() => void> = [];

  override async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    if (this.hang) await new Promise<void>((resolve) => this.held.push(resolve));
    return super.sync(state, changes);
  }

  /** Syncs waiting to return. */
  get holding(): number {
    return this.held.length;
  }

  release(): void {
    for (const resolve of this.held.splice(0)) resolve();
  }
}

function setup(opts: { syncDeadline?: number } = {}) {
  const clock = createFakeClock(1_000_000);
  const registry = new Registry();
  const metrics = daemonMetrics(registry);
  const health = new ProxyHealth({ healthTimeout: HEALTH_TIMEOUT, clock });
  const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'node1' });
  tracker.onServicesSynced();
  tracker.onEndpointSlicesSynced();
  tracker.onNodeSynced();
  const backend = new HangingBackend('IPv4');
  const synced: ProxyState[] = [];
  const logger = createTestLogger();
  const proxier = new FamilyProxier({
    family: 'IPv4',
    tracker,
    backend,
    minSyncPeriod: 1000,
    syncPeriod: SYNC_PERIOD,
    ...opts,
    clock,
    logger,
    metrics,
    health,
    onSynced: (state) => synced.push(state),
  });
  /** A new service, announced as the fanout does. */
  const addService = (name: string) => {
    tracker.onServiceAdd(service('ns1', name, { clusterIP: `10.96.0.${10 + name.length}`, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }));
    proxier.changed('service');
  };
  const metric = async (name: string) => (await registry.getSingleMetric(`kubeproxy_${name}`)?.get())?.values.find((v) => v.labels.ip_family === 'IPv4')?.value ?? 0;
  return { clock, health, backend, proxier, synced, logger, addService, metric };
}

describe('FamilyProxier health', () => {
  it('turns unhealthy one health timeout after the start when the first sync never succeeds', async () => {
    const { clock, health, backend, proxier } = setup();
    backend.fail = true;
    proxier.start();
    await clock.advanceAsync(HEALTH_TIMEOUT - 1);
    expect(backend.syncs.length).toBeGreaterThan(1); // retried meanwhile
    expect(health.isHealthy()).toBe(true);
    await clock.advanceAsync(1);
    expect(health.isHealthy()).toBe(false);
    expect(health.healthz().healthy).toBe(false);

    backend.fail = false;
    await clock.advanceAsync(SYNC_PERIOD);
    expect(backend.oks).toBe(1);
    expect(health.isHealthy()).toBe(true);
    await proxier.stop();
  });

  it('turns unhealthy when periodic syncs keep failing with no change pending', async () => {
    const { clock, health, backend, proxier } = setup();
    proxier.start();
    await clock.advanceAsync(0);
    expect(backend.oks).toBe(1);
    backend.fail = true;
    // The periodic sync at SYNC_PERIOD fails; its work stays queued from then on.
    await clock.advanceAsync(SYNC_PERIOD + HEALTH_TIMEOUT - 1);
    expect(health.isHealthy()).toBe(true);
    await clock.advanceAsync(1);
    expect(health.isHealthy()).toBe(false);
    await proxier.stop();
  });
});

describe('FamilyProxier sync deadline', () => {
  it('counts a sync that never returns as failed at the deadline, and retries its changes once it returns', async () => {
    const { clock, health, backend, proxier, synced, logger, addService, metric } = setup({ syncDeadline: 10_000 });
    proxier.start();
    await clock.advanceAsync(0);
    expect(synced).toHaveLength(1);

    backend.hang = true;
    addService('web');
    await clock.advanceAsync(1000);
    expect(backend.holding).toBe(1);
    await clock.advanceAsync(9_999);
    expect(proxier.last?.ok).toBe(true); // the first sync's
    await clock.advanceAsync(1);
    expect(proxier.last?.ok).toBe(false);
    expect(proxier.last?.error?.message).toMatch(/deadline of 10000 ms/);
    expect(await metric('sync_proxy_rules_deadline_exceeded_total')).toBe(1);
    expect(logger.at('error').some((e) => e.msg === 'Failed to sync proxy rules; will retry')).toBe(true);

    // More changes and the retry's time come and go: no second sync while the backend may still be writing.
    addService('api');
    await clock.advanceAsync(HEALTH_TIMEOUT);
    expect(backend.holding).toBe(1);
    expect(backend.syncs).toHaveLength(1);
    expect(health.isHealthy()).toBe(false);

    // The abandoned sync returns "ok" late: not a success (its state is old), and the retry
    // that follows at once carries both services' changes.
    backend.hang = false;
    backend.release();
    await clock.advanceAsync(0);
    expect(backend.syncs).toHaveLength(3);
    const retry = backend.syncs[2] as { changes: ChangeSet; state: ProxyState };
    expect([...retry.changes.servicePorts].sort()).toEqual(['ns1/api:http/TCP', 'ns1/web:http/TCP']);
    expect(synced).toHaveLength(2);
    expect([...(synced[1] as ProxyState).services.keys()].sort()).toEqual(['ns1/api:http/TCP', 'ns1/web:http/TCP']);
    expect(health.isHealthy()).toBe(true);
    expect(logger.at('warn').some((e) => /abandoned at its deadline returned/.test(e.msg ?? ''))).toBe(true);
    await proxier.stop();
  });

  it('a sync that is slow but within the deadline is not failed', async () => {
    const { clock, backend, proxier, synced, metric } = setup({ syncDeadline: 10_000 });
    backend.hang = true;
    proxier.start();
    await clock.advanceAsync(9_000);
    backend.hang = false;
    backend.release();
    await clock.advanceAsync(0);
    expect(proxier.last?.ok).toBe(true);
    expect(synced).toHaveLength(1);
    expect(await metric('sync_proxy_rules_deadline_exceeded_total')).toBe(0);
    await proxier.stop();
  });
});
