import { afterEach, describe, expect, it } from 'vitest';
import { ProxyHealth, type Clock } from '@kube-proxy-ts/core';
import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { createRegistry } from '../daemon/metrics.js';
import { goTimeString } from './go-time.js';
import { startHealthServer } from './health-server.js';
import type { RunningServer } from './listen.js';
import { startMetricsServer } from './metrics-server.js';
import { serviceHealthBody, ServiceHealthServer } from './service-health.js';

function manualClock(start = Date.UTC(2026, 0, 2, 3, 4, 5, 120)): Clock & { t: number } {
  return { t: start, now() { return this.t; }, setTimeout: () => 0, clearTimeout: () => undefined };
}

const open: Array<RunningServer | ServiceHealthServer> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function get(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };

describe('goTimeString', () => {
  it('prints Go time.String() in UTC', () => {
    expect(goTimeString(Date.UTC(2026, 0, 2, 3, 4, 5, 120))).toBe('2026-01-02 03:04:05.12 +0000 UTC');
    expect(goTimeString(Date.UTC(2026, 0, 2, 3, 4, 5))).toBe('2026-01-02 03:04:05 +0000 UTC');
    expect(goTimeString(undefined)).toBe('0001-01-01 00:00:00 +0000 UTC');
  });
});

describe('health server', () => {
  it('serves /healthz and /livez with upstream bodies, codes, headers and counters', async () => {
    const clock = manualClock();
    const health = new ProxyHealth({ healthTimeout: 60_000, clock });
    const registry = createRegistry();
    const srv = await startHealthServer('127.0.0.1:0', health, registry);
    open.push(srv);
    const port = srv.address.port;

    let r = await get(port, '/healthz');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    const now = '2026-01-02 03:04:05.12 +0000 UTC';
    expect(r.body).toBe(`{"lastUpdated": "${now}","currentTime": "${now}", "nodeEligible": true}`);

    // A queued update not applied within the timeout: both endpoints fail.
    health.updated('IPv4');
    const syncedAt = goTimeString(clock.t);
    clock.t += 1000;
    health.queued('IPv4');
    clock.t += 60_000;
    r = await get(port, '/healthz');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ lastUpdated: syncedAt, currentTime: goTimeString(clock.t), nodeEligible: true });
    r = await get(port, '/livez');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ lastUpdated: syncedAt, currentTime: goTimeString(clock.t) });

    // Synced again; then the node goes away: /healthz fails, /livez does not.
    health.updated('IPv4');
    health.syncNode({ metadata: { name: 'n1' }, spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] } });
    r = await get(port, '/healthz');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body).nodeEligible).toBe(false);
    expect((await get(port, '/livez')).status).toBe(200);
    expect((await get(port, '/other')).status).toBe(404);

    const text = await registry.metrics();
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="200"} 1');
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="503"} 2');
    expect(text).toContain('kubeproxy_proxy_livez_total{code="503"} 1');
    expect(text).toContain('kubeproxy_proxy_livez_total{code="200"} 1');
  });
});

describe('metrics server', () => {
  it('serves /metrics with process and kubeproxy series, /configz, /proxyMode and /healthz', async () => {
    const registry = createRegistry();
    const config = { ...defaultProxyConfig(), mode: 'nftables' };
    const srv = await startMetricsServer('127.0.0.1:0', registry, config);
    open.push(srv);
    const port = srv.address.port;
    const m = await get(port, '/metrics');
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
    for (const name of [
      'process_cpu_seconds_total',
      'process_start_time_seconds',
      'kubeproxy_sync_proxy_rules_duration_seconds',
      'kubeproxy_sync_full_proxy_rules_duration_seconds',
      'kubeproxy_sync_partial_proxy_rules_duration_seconds',
      'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
      'kubeproxy_network_programming_duration_seconds',
      'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
      'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      'kubeproxy_sync_proxy_rules_service_changes_pending',
      'kubeproxy_sync_proxy_rules_service_changes_total',
      'kubeproxy_sync_proxy_rules_no_local_endpoints_total',
      'kubeproxy_proxy_healthz_total',
      'kubeproxy_proxy_livez_total',
    ]) {
      expect(m.body, name).toContain(`# TYPE ${name} `);
    }
    expect((await get(port, '/proxyMode')).body).toBe('nftables');
    const cz = JSON.parse((await get(port, '/configz')).body);
    expect(cz['kubeproxy.config.k8s.io']).toMatchObject({ kind: 'KubeProxyConfiguration', mode: 'nftables', iptables: { syncPeriod: '30s' } });
    expect((await get(port, '/healthz')).body).toBe('ok');
  });

  it('uses upstream buckets', async () => {
    const registry = createRegistry();
    const h = registry.getSingleMetric('kubeproxy_sync_proxy_rules_duration_seconds') as unknown as { upperBounds: number[] };
    expect(h.upperBounds).toHaveLength(15);
    expect(h.upperBounds[0]).toBe(0.001);
    expect(h.upperBounds[14]).toBeCloseTo(16.384);
    const np = registry.getSingleMetric('kubeproxy_network_programming_duration_seconds') as unknown as { upperBounds: number[] };
    expect(np.upperBounds.slice(0, 4)).toEqual([0.25, 0.5, 1, 2]);
    expect(np.upperBounds).toHaveLength(2 + 59 + 12 + 7);
    expect(np.upperBounds.at(-1)).toBe(300);
  });
});

describe('service health-check node ports', () => {
  it('opens a server per Local service, answers as upstream, follows endpoint counts and closes', async () => {
    let healthy = true;
    const shs = new ServiceHealthServer({ hosts: ['127.0.0.1'], proxyHealthy: () => healthy, logger: silent });
    open.push(shs);
    // Let the kernel pick a free port first, then ask the server to use it.
    const probe = await startMetricsServer('127.0.0.1:0', createRegistry(), defaultProxyConfig());
    const port = probe.address.port;
    await probe.close();

    await shs.syncServices(new Map([['ns1/web', port]]));
    shs.syncEndpoints(new Map([['ns1/web', 2]]));
    let r = await get(port, '/anything');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('x-load-balancing-endpoint-weight')).toBe('2');
    expect(r.body).toBe(serviceHealthBody('ns1', 'web', 2, true));
    expect(JSON.parse(r.body)).toEqual({ service: { namespace: 'ns1', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true });

    shs.syncEndpoints(new Map());
    r = await get(port, '/');
    expect(r.status).toBe(503);
    expect(r.headers.get('x-load-balancing-endpoint-weight')).toBe('0');

    shs.syncEndpoints(new Map([['ns1/web', 1]]));
    healthy = false;
    r = await get(port, '/');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body).serviceProxyHealthy).toBe(false);

    await shs.syncServices(new Map());
    expect(shs.ports().size).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });
});
