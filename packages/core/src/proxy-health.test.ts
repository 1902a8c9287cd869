// Cases after upstream's TestHealthzServer / TestLivezServer (pkg/proxy/healthcheck/healthcheck_test.go).

import { describe, expect, it } from 'vitest';
import { ProxyHealth } from './proxy-health.js';
import { testClock, v1Node } from './builders.test-support.js';

const SYNC_PERIOD = 30_000;

function setup() {
  const clock = testClock(1_000_000);
  const health = new ProxyHealth({ healthTimeout: 2 * SYNC_PERIOD, clock });
  return { clock, health };
}

describe('ProxyHealth', () => {
  it('is healthy while starting up, even with updates queued before the first sync', async () => {
    const { clock, health } = setup();
    health.queued('IPv4');
    await clock.advance(5 * SYNC_PERIOD);
    expect(health.healthz()).toEqual({ healthy: true, lastUpdated: undefined, currentTime: clock.now(), nodeEligible: true });
  });

  it('counts the first sync as queued from the start of the loop: never succeeding turns it unhealthy', async () => {
    const { clock, health } = setup();
    health.queued('IPv4'); // while the informers list
    await clock.advance(3 * SYNC_PERIOD);
    health.started('IPv4');
    const startedAt = clock.now();
    // Listing took longer than the timeout, but only the wait since the start counts.
    expect(health.isHealthy()).toBe(true);
    await clock.advance(2 * SYNC_PERIOD - 1);
    expect(health.healthz()).toMatchObject({ healthy: true, lastUpdated: startedAt });
    await clock.advance(1);
    expect(health.healthz()).toEqual({ healthy: false, lastUpdated: startedAt, currentTime: clock.now(), nodeEligible: true });
    expect(health.livez().healthy).toBe(false);
    health.updated('IPv4');
    expect(health.healthz()).toMatchObject({ healthy: true, lastUpdated: clock.now() });
  });

  it('turns unhealthy when a queued update waits the whole timeout, healthy again after a sync', async () => {
    const { clock, health } = setup();
    health.updated('IPv4');
    const syncedAt = clock.now();
    health.queued('IPv4');
    await clock.advance(2 * SYNC_PERIOD - 1);
    expect(health.isHealthy()).toBe(true);
    // Later queued updates do not move the oldest pending one.
    health.queued('IPv4');
    await clock.advance(1);
    expect(health.healthz()).toMatchObject({ healthy: false, lastUpdated: syncedAt });
    expect(health.livez().healthy).toBe(false);
    health.updated('IPv4');
    expect(health.healthz()).toMatchObject({ healthy: true, lastUpdated: clock.now() });
  });

  it('without queued updates stays healthy however old the last sync is', async () => {
    const { clock, health } = setup();
    health.updated('IPv4');
    await clock.advance(100 * SYNC_PERIOD);
    expect(health.isHealthy()).toBe(true);
  });

  it('is unhealthy when either family is late (dual-stack)', async () => {
    const { clock, health } = setup();
    health.updated('IPv4');
    health.updated('IPv6');
    health.queued('IPv6');
    await clock.advance(2 * SYNC_PERIOD);
    health.updated('IPv4');
    expect(health.isHealthy()).toBe(false);
    health.updated('IPv6');
    expect(health.isHealthy()).toBe(true);
  });

  it('/healthz follows node eligibility, /livez ignores it', () => {
    const { health } = setup();
    health.updated('IPv4');
    health.syncNode(v1Node('n', { taints: ['ToBeDeletedByClusterAutoscaler'] }));
    expect(health.healthz()).toMatchObject({ healthy: false, nodeEligible: false });
    expect(health.livez()).toMatchObject({ healthy: true, nodeEligible: false });
    health.syncNode(v1Node('n'));
    expect(health.healthz().healthy).toBe(true);
    health.syncNode(v1Node('n', { deleting: true }));
    expect(health.nodeEligible).toBe(false);
    expect(health.isHealthy()).toBe(true);
  });
});
