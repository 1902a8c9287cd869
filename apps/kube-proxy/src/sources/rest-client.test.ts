// The API client against the in-repo API server: JSON answers and errors, watch events, the
// client-side rate limit (clientConnection.qps/burst) and the rest_client_* series.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeClock, flushPromises } from '@kube-proxy-ts/testing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestApiServer, writeKubeconfig } from '@kube-proxy-ts/testing/apiserver';
import { type ClusterAccess, loadClusterAccess } from './kubeconfig.js';
import { ApiClient, ApiError, DEFAULT_BURST, DEFAULT_QPS, TokenBucket, clientRateLimit } from './rest-client.js';

/** A counter's value, or a histogram's `_count`, for the series with these labels. */
async function sample(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  const hit = values.find((v) => {
    const metricName = (v as { metricName?: string }).metricName;
    return (metricName === undefined || metricName === `${name}_count`) && Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want);
  });
  return hit?.value;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('TokenBucket (client-go flowcontrol semantics)', () => {
  it('with qps 2 and burst 2, six requests take 2 s: two at once, then one every 500 ms', async () => {
    const clock = createFakeClock(0);
    const bucket = new TokenBucket(2, 2, clock);
    const grantedAt: number[] = [];
    for (let i = 0; i < 6; i++) void bucket.wait().then(() => grantedAt.push(clock.now()));
    await flushPromises();
    expect(grantedAt).toEqual([0, 0]);
    await clock.advanceAsync(2000);
    expect(grantedAt).toEqual([0, 0, 500, 1000, 1500, 2000]);
    expect(Math.max(...grantedAt)).toBeGreaterThanOrEqual(2000);
  });

  it('refills while idle, never above burst', () => {
    const clock = createFakeClock(0);
    const bucket = new TokenBucket(1, 3, clock);
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 0]);
    expect(bucket.reserve()).toBe(1000);
    clock.advance(60_000);
    // A minute idle refills only `burst` tokens.
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 0, 1000]);
  });

  it('refuses settings that would never grant a request', () => {
    const clock = createFakeClock(0);
    expect(() => new TokenBucket(0, 1, clock)).toThrow(/qps/);
    expect(() => new TokenBucket(1, 0, clock)).toThrow(/burst/);
  });

  it('reads qps/burst as client-go does: 0 is the default (5/10), a negative qps no limit', () => {
    const clock = createFakeClock(0);
    const defaults = clientRateLimit(0, 0, clock);
    expect([defaults?.qps, defaults?.burst]).toEqual([DEFAULT_QPS, DEFAULT_BURST]);
    expect([DEFAULT_QPS, DEFAULT_BURST]).toEqual([5, 10]);
    expect(clientRateLimit(-1, 10, clock)).toBeUndefined();
    const set = clientRateLimit(2.5, 4, clock);
    expect([set?.qps, set?.burst]).toEqual([2.5, 4]);
  });
});

describe('ApiClient against the test API server', () => {
  let server: TestApiServer;
  let dir: string;
  let base: ClusterAccess;
  let host: string;

  beforeAll(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    dir = await mkdtemp(join(tmpdir(), 'kpts-rest-client-'));
    base = loadClusterAccess(await writeKubeconfig(dir, server.url));
    host = new URL(server.url).host;
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts every API call by code, method and host, and times it by verb and host', async () => {
    const registry = new Registry();
    const client = new ApiClient(base, { registry });
    await client.get('/api/v1/services');
    await client.get('/api/v1/nodes', { fieldSelector: 'metadata.name=node1' });
    server.failRequests({ verb: 'list', resource: 'services', status: 503 });
    await expect(client.get('/api/v1/services')).rejects.toThrow(ApiError);

    expect(await sample(registry, 'rest_client_requests_total', { code: '200', method: 'GET', host })).toBe(2);
    expect(await sample(registry, 'rest_client_requests_total', { code: '503', method: 'GET', host })).toBe(1);
    await waitFor('the three durations', async () => (await sample(registry, 'rest_client_request_duration_seconds', { verb: 'GET', host })) === 3);
    const text = await registry.metrics();
    expect(text).toContain(`rest_client_request_duration_seconds_bucket{le="0.005",verb="GET",host="${host}"}`);
    expect(text).toContain(`rest_client_request_duration_seconds_bucket{le="60",verb="GET",host="${host}"}`);
  });

  it('counts a request that gets no response as code "<error>"', async () => {
    const registry = new Registry();
    // A port nothing listens on: the closed test server's.
    const gone = await TestApiServer.start();
    const url = gone.url;
    await gone.close();
    const client = new ApiClient(loadClusterAccess(undefined, url), { registry });
    await expect(client.get('/api/v1/services')).rejects.toThrow(/ECONNREFUSED/);
    expect(await sample(registry, 'rest_client_requests_total', { code: '<error>', method: 'GET', host: new URL(url).host })).toBe(1);
  });

  it('counts a watch when its response headers arrive, before any event, and does not time it', async () => {
    const registry = new Registry();
    const client = new ApiClient(base, { registry });
    const controller = await client.watch('/api/v1/services', { allowWatchBookmarks: false }, () => undefined, () => undefined);
    try {
      await waitFor('the watch to be counted', async () => (await sample(registry, 'rest_client_requests_total', { code: '200', method: 'GET', host })) === 1);
    } finally {
      controller.abort();
    }
    // Even once it ended, a watch is no request latency.
    await waitFor('the watch to close', () => server.activeWatches('services') === 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(await sample(registry, 'rest_client_request_duration_seconds', { verb: 'GET', host })).toBeUndefined();
    expect(await sample(registry, 'rest_client_requests_total', { code: '<error>', method: 'GET', host })).toBeUndefined();
  });

  it('holds API calls to clientConnection.qps/burst, but never a watch', async () => {
    const clock = createFakeClock(0);
    const registry = new Registry();
    const client = new ApiClient(base, { registry, qps: 2, burst: 2, clock });
    const lists = () => server.requestsOf('list', 'nodes').length;
    const before = lists();
    const calls = Array.from({ length: 6 }, () => client.get('/api/v1/nodes'));
    await waitFor('the burst', () => lists() - before === 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(lists() - before).toBe(2);

    // A watch starts at once although the bucket is empty.
    const watchesBefore = server.requestsOf('watch', 'nodes').length;
    const controller = await client.watch('/api/v1/nodes', {}, () => undefined, () => undefined);
    await waitFor('the watch request', () => server.requestsOf('watch', 'nodes').length === watchesBefore + 1);
    controller.abort();

    for (const [ms, expected] of [[500, 3], [1000, 4], [1500, 5], [2000, 6]] as const) {
      await clock.advanceAsync(ms - clock.now());
      await waitFor(`list ${expected} at ${ms} ms`, () => lists() - before === expected);
    }
    await Promise.all(calls);
    // Four of the six waited: 0.5 + 1 + 1.5 + 2 s in all.
    expect(await sample(registry, 'rest_client_rate_limiter_duration_seconds', { verb: 'GET', host })).toBe(6);
    const sum = (await registry.getSingleMetric('rest_client_rate_limiter_duration_seconds')?.get())?.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_sum'))?.value;
    expect(sum).toBeCloseTo(5, 5);
  });

  it('answers JSON, gives an error answer its code and Status message, and sends the bearer token', async () => {
    const client = new ApiClient(base);
    server.apply('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'TCP' }] } });
    const list = await client.get<{ items: Array<{ metadata: { name: string } }> }>('/api/v1/services', { limit: 10, labelSelector: undefined });
    expect(list.items.map((s) => s.metadata.name)).toContain('web');
    expect(server.requestsOf('list', 'services').at(-1)?.query).toMatchObject({ limit: '10' });
    server.failRequests({ verb: 'list', resource: 'services', status: 403 });
    const err = await client.get('/api/v1/services').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).statusCode).toBe(403);
  });

  it('delivers watch events in order, and reports the end of a watch once', async () => {
    const client = new ApiClient(base);
    const events: string[] = [];
    let ends = 0;
    const { metadata } = await client.get<{ metadata: { resourceVersion: string } }>('/api/v1/services');
    const controller = await client.watch('/api/v1/services', { resourceVersion: metadata.resourceVersion }, (type, obj) => events.push(`${type} ${(obj as { metadata: { name: string } }).metadata.name}`), () => ends++);
    await waitFor('the watch', () => server.activeWatches('services') > 0);
    for (const name of ['a', 'b']) server.apply('services', { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns2' }, spec: { clusterIP: 'None' } });
    server.delete('services', 'ns2', 'a');
    await waitFor('three events', () => events.length >= 3);
    expect(events).toEqual(['ADDED a', 'ADDED b', 'DELETED a']);
    controller.abort();
    await waitFor('the end', () => ends === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(ends).toBe(1);
  });
});

describe('ApiClient watch stream', () => {
  it('reads events split across chunks, a last line without a newline, and gives an HTTP error its code', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => {
      if (req.url?.includes('forbidden')) {
        res.writeHead(403, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', message: 'services is forbidden', code: 403 }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const a = JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } });
      const b = JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } });
      // One event cut in two writes, then one that ends the stream without a newline.
      res.write(a.slice(0, 10));
      setTimeout(() => {
        res.write(`${a.slice(10)}\n`);
        setTimeout(() => res.end(b), 20);
      }, 20);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const client = new ApiClient(loadClusterAccess(undefined, url));
      const events: string[] = [];
      const ended = await new Promise<unknown>((resolve) => void client.watch('/api/v1/services', {}, (type, obj) => events.push(`${type} ${JSON.stringify(obj)}`), resolve));
      expect(ended).toBeNull();
      expect(events).toEqual(['ADDED {"metadata":{"name":"a"}}', 'BOOKMARK {"metadata":{"resourceVersion":"9"}}']);
      const refused = await new Promise<unknown>((resolve) => void client.watch('/api/v1/forbidden', {}, () => undefined, resolve));
      expect(refused).toBeInstanceOf(ApiError);
      expect([(refused as ApiError).statusCode, (refused as ApiError).message]).toEqual([403, 'services is forbidden']);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
