// The protocol of the test API server, checked over plain HTTP (the informer tests in
// src/sources drive it through client-node).

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseFieldSelector, parseLabelSelector, SelectorError } from './selectors.js';
import { TestApiServer } from './server.js';
import type { StoredObject } from './store.js';

interface WatchEvent {
  type: string;
  object: { metadata: { name: string; resourceVersion: string }; code?: number; message?: string };
}

const svc = (name: string, labels?: Record<string, string>, namespace = 'ns1') => ({ metadata: { name, namespace, ...(labels ? { labels } : {}) }, spec: { clusterIP: '10.96.0.1' } });

/** Reads watch events until `count` arrived or the stream ended. */
async function readEvents(url: string, count: number, timeoutMs = 2000): Promise<{ status: number; events: WatchEvent[]; ended: boolean }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const res = await fetch(url, { signal: controller.signal });
  const events: WatchEvent[] = [];
  let ended = false;
  if (res.status === 200 && res.body) {
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of res.body) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buffered.slice(0, nl)) as WatchEvent);
          buffered = buffered.slice(nl + 1);
        }
        if (events.length >= count) break;
      }
      ended = events.length < count;
    } catch {
      // aborted by the timeout
    }
  }
  clearTimeout(timer);
  controller.abort();
  return { status: res.status, events, ended };
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('test API server', () => {
  let server: TestApiServer;

  beforeEach(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 50 });
  });

  afterEach(async () => {
    await server.close();
  });

  it('lists with label and field selectors, namespaces, and pages with continue tokens', async () => {
    server.apply('services', svc('a'));
    server.apply('services', svc('b', { 'service.kubernetes.io/service-proxy-name': 'x' }));
    server.apply('services', svc('c', { app: 'web' }));
    server.apply('services', svc('d', { app: 'web' }, 'ns2'));
    const rv = server.store.resourceVersion;

    const get = async (q: string) => (await (await fetch(`${server.url}${q}`)).json()) as { kind: string; metadata: { resourceVersion: string; continue?: string }; items: StoredObject[] };
    const names = (l: { items: StoredObject[] }) => l.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);

    const all = await get('/api/v1/services?labelSelector=' + encodeURIComponent('!service.kubernetes.io/service-proxy-name'));
    expect(all.kind).toBe('ServiceList');
    expect(all.metadata.resourceVersion).toBe(String(rv));
    expect(names(all)).toEqual(['ns1/a', 'ns1/c', 'ns2/d']);
    expect(all.items[0]).not.toHaveProperty('kind');
    expect(names(await get('/api/v1/services?labelSelector=app%3Dweb'))).toEqual(['ns1/c', 'ns2/d']);
    expect(names(await get('/api/v1/namespaces/ns2/services'))).toEqual(['ns2/d']);
    expect(names(await get('/api/v1/services?fieldSelector=metadata.name%3Da'))).toEqual(['ns1/a']);

    const page1 = await get('/api/v1/services?limit=3');
    expect(names(page1)).toEqual(['ns1/a', 'ns1/b', 'ns1/c']);
    server.apply('services', svc('aa')); // not in the snapshot the pages come from
    const page2 = await get(`/api/v1/services?limit=3&continue=${page1.metadata.continue}`);
    expect(names(page2)).toEqual(['ns2/d']);
    expect(page2.metadata.continue).toBeUndefined();
    expect(page2.metadata.resourceVersion).toBe(String(rv));

    server.compact();
    const expired = await fetch(`${server.url}/api/v1/services?limit=3&continue=${page1.metadata.continue}`);
    expect(expired.status).toBe(410);
    expect(await expired.json()).toMatchObject({ kind: 'Status', reason: 'Expired', code: 410 });
    expect((await fetch(`${server.url}/api/v1/services?labelSelector=${encodeURIComponent('a b c')}`)).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/pods`)).status).toBe(404);
  });

  it('watches: initial state, replay from a resourceVersion, selector moves, bookmarks, timeout', async () => {
    const a = server.apply('services', svc('a'));
    const start = server.store.resourceVersion;
    server.apply('services', svc('a', { app: 'web' }));
    server.apply('services', svc('b', { app: 'web' }));
    server.delete('services', 'ns1', 'b');

    const fromNow = await readEvents(`${server.url}/api/v1/services?watch=true`, 1);
    expect(fromNow.events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED a']);

    const replay = await readEvents(`${server.url}/api/v1/services?watch=1&resourceVersion=${start}`, 3);
    expect(replay.events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['MODIFIED a', 'ADDED b', 'DELETED b']);
    expect(Number(replay.events[2]?.object.metadata.resourceVersion)).toBe(server.store.resourceVersion);

    // With a selector, a change that leaves or enters the selection is a DELETED or ADDED.
    const selected = await readEvents(`${server.url}/api/v1/services?watch=true&resourceVersion=${a.metadata.resourceVersion}&labelSelector=app%21%3Dweb`, 1);
    expect(selected.events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['DELETED a']);

    const live = readEvents(`${server.url}/api/v1/services?watch=true&resourceVersion=${server.store.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`, 100, 3000);
    await waitFor('the watch', () => server.activeWatches('services') === 1);
    server.apply('services', svc('c'));
    const got = await live;
    expect(got.ended).toBe(true); // closed by the server after timeoutSeconds
    expect(got.events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name)).toEqual(['c']);
    expect(got.events.filter((e) => e.type === 'BOOKMARK').length).toBeGreaterThanOrEqual(5);
  });

  it('answers a watch from a compacted resourceVersion with a 410 ERROR event, or a 410 status', async () => {
    server.apply('nodes', { metadata: { name: 'n1' } });
    const old = server.store.resourceVersion;
    server.apply('nodes', { metadata: { name: 'n2' } });
    server.compact();
    const res = await readEvents(`${server.url}/api/v1/nodes?watch=true&resourceVersion=${old - 1}`, 2);
    expect(res.status).toBe(200);
    expect(res.ended).toBe(true);
    expect(res.events).toEqual([{ type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired' }) }]);
    // From the compaction point on, history is still there.
    const ok = await readEvents(`${server.url}/api/v1/nodes?watch=true&resourceVersion=${server.store.oldestResourceVersion}`, 1, 300);
    expect(ok.events).toEqual([]);
    expect(ok.ended).toBe(false);

    const strict = await TestApiServer.start({ expiredWatch: 'status' });
    strict.apply('nodes', { metadata: { name: 'n1' } });
    strict.apply('nodes', { metadata: { name: 'n1' } });
    strict.compact();
    const r = await fetch(`${strict.url}/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion=1`);
    expect(r.status).toBe(410);
    await strict.close();
  });

  it('test controls: stalled and dropped watches, injected failures, slow responses', async () => {
    const stalled = readEvents(`${server.url}/api/v1/services?watch=true&allowWatchBookmarks=true&timeoutSeconds=1`, 100, 1200);
    await waitFor('the watch', () => server.activeWatches('services') === 1);
    expect(server.stallWatches()).toBe(1);
    server.apply('services', svc('a'));
    const s = await stalled;
    expect(s.ended).toBe(false); // neither the event, nor the timeout close came
    expect(s.events.some((e) => e.type === 'ADDED')).toBe(false);

    const dropped = readEvents(`${server.url}/api/v1/services?watch=true&resourceVersion=${server.store.resourceVersion}`, 1);
    await waitFor('the watch', () => server.activeWatches('services') === 1);
    expect(server.dropWatches('end')).toBe(1);
    expect((await dropped).ended).toBe(true);

    server.failRequests({ status: 500, verb: 'list', count: 1 });
    expect((await fetch(`${server.url}/api/v1/nodes`)).status).toBe(500);
    expect((await fetch(`${server.url}/api/v1/nodes`)).status).toBe(200);

    server.setLatency({ list: 150 });
    const t0 = Date.now();
    await fetch(`${server.url}/api/v1/nodes`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(server.requestsOf('list', 'nodes')).toHaveLength(3);
  });
});

describe('selectors', () => {
  const obj = (name: string, labels: Record<string, string> = {}, namespace?: string) =>
    ({ metadata: { name, labels, resourceVersion: '1', ...(namespace ? { namespace } : {}) } }) as StoredObject;

  it('matches label requirements', () => {
    const sel = parseLabelSelector('!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name');
    expect(sel(obj('a'))).toBe(true);
    expect(sel(obj('a', { 'service.kubernetes.io/headless': '' }))).toBe(false);
    expect(sel(obj('a', { 'service.kubernetes.io/service-proxy-name': 'x' }))).toBe(false);
    expect(parseLabelSelector('app=web,tier!=db')(obj('a', { app: 'web', tier: 'fe' }))).toBe(true);
    expect(parseLabelSelector('app==web')(obj('a', { app: 'db' }))).toBe(false);
    expect(parseLabelSelector('app in (web, api)')(obj('a', { app: 'api' }))).toBe(true);
    expect(parseLabelSelector('app notin (web,api),env')(obj('a', { app: 'x', env: 'p' }))).toBe(true);
    expect(parseLabelSelector('env')(obj('a'))).toBe(false);
    expect(() => parseLabelSelector('a b')).toThrow(SelectorError);
    expect(() => parseLabelSelector('=x')).toThrow(SelectorError);
  });

  it('matches metadata.name and metadata.namespace fields, and rejects others', () => {
    expect(parseFieldSelector('metadata.name=node-a')(obj('node-a'))).toBe(true);
    expect(parseFieldSelector('metadata.name=node-a')(obj('node-b'))).toBe(false);
    expect(parseFieldSelector('metadata.namespace!=kube-system')(obj('x', {}, 'default'))).toBe(true);
    expect(() => parseFieldSelector('spec.nodeName=x')).toThrow('field label not supported: spec.nodeName');
  });
});
