// The Kubernetes source through the real client-node informers, against the in-repo API server.
// Every scenario ends by checking that the handler holds exactly the server's objects (as
// selected by kube-proxy's selectors) and that every update carried the previously delivered object.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endpointSlice, node, service, createTestLogger, type TestLogger } from '@kube-proxy-ts/testing';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingHandler, type RecordedKind, type ResourceName, type StoredObject, TestApiServer, writeKubeconfig } from '../testing-apiserver/index.js';
import { LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME, PROXIED_OBJECTS_LABEL_SELECTOR } from './kinds.js';
import { loadKubeConfig, startKubernetesSource } from './kubernetes.js';
import type { Source, WatchdogOptions } from './types.js';

const NODE = 'node-a';
const WATCHDOG: WatchdogOptions = { idleTimeoutMs: 500, initialBackoffMs: 20, maxBackoffMs: 80, jitter: 0.2, watchTimeoutSeconds: 30 };

const KINDS: Array<[RecordedKind, ResourceName]> = [
  ['Service', 'services'],
  ['EndpointSlice', 'endpointslices'],
  ['Node', 'nodes'],
];

function keyOf(o: StoredObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** What kube-proxy should hold: key -> resourceVersion, through its selectors. */
function serverView(server: TestApiServer, kind: RecordedKind, resource: ResourceName): Record<string, string> {
  const selected = (o: StoredObject) => {
    if (kind === 'Node') return o.metadata.name === NODE;
    const labels = o.metadata.labels ?? {};
    return !(LABEL_SERVICE_PROXY_NAME in labels) && !(LABEL_HEADLESS in labels);
  };
  return Object.fromEntries(server.list(resource).filter(selected).map((o) => [keyOf(o), o.metadata.resourceVersion]));
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function restarts(registry: Registry): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric('kubeproxy_informer_restarts_total');
  const out: Record<string, number> = {};
  for (const v of (await metric?.get())?.values ?? []) out[String(v.labels.resource)] = v.value;
  return out;
}

describe('Kubernetes source (client-node informers against the test API server)', () => {
  let server: TestApiServer;
  let dir: string;
  let handler: RecordingHandler;
  let logger: TestLogger;
  let registry: Registry;
  let source: Source | undefined;

  async function start(watchdog: WatchdogOptions = WATCHDOG): Promise<Source> {
    const kubeConfig = loadKubeConfig(await writeKubeconfig(dir, server.url));
    source = startKubernetesSource({ kubeConfig, nodeName: NODE, handler, logger, metrics: registry, watchdog });
    return source;
  }

  /** The handler holds exactly what the server has, and never saw a contradicting call. */
  async function converged(): Promise<void> {
    const same = () => KINDS.every(([kind, resource]) => JSON.stringify(sortKeys(handler.versions(kind))) === JSON.stringify(sortKeys(serverView(server, kind, resource))));
    await waitFor('the handler to hold the server state', () => same()).catch((err: unknown) => {
      for (const [kind, resource] of KINDS) expect(sortKeys(handler.versions(kind)), kind).toEqual(sortKeys(serverView(server, kind, resource)));
      throw err;
    });
    expect(handler.violations).toEqual([]);
  }

  function seed(): void {
    server.apply('services', service('ns1', 'web'));
    server.apply('services', service('ns1', 'db'));
    server.apply('services', service('ns2', 'other-proxy', { labels: { [LABEL_SERVICE_PROXY_NAME]: 'someone-else' } }));
    server.apply('endpointslices', endpointSlice('ns1', 'web', { endpoints: ['10.180.0.1', '10.180.0.2'] }));
    server.apply('endpointslices', endpointSlice('ns1', 'db', { endpoints: ['10.180.0.3'] }));
    server.apply('endpointslices', endpointSlice('ns1', 'headless', { labels: { [LABEL_HEADLESS]: '' }, endpoints: ['10.180.0.9'] }));
    server.apply('nodes', node(NODE, { zone: 'z1' }));
    server.apply('nodes', node('node-b'));
  }

  beforeEach(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    dir = await mkdtemp(join(tmpdir(), 'kpts-sources-'));
    handler = new RecordingHandler();
    logger = createTestLogger();
    registry = new Registry();
    seed();
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("lists with upstream's selectors, syncs, and keeps quiet watches alive through bookmarks", async () => {
    const s = await start();
    await s.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await converged();
    expect([...handler.objects.Service.keys()].sort()).toEqual(['ns1/db', 'ns1/web']);
    expect([...handler.objects.EndpointSlice.keys()].sort()).toEqual(['ns1/db-abcde', 'ns1/web-abcde']);
    expect([...handler.objects.Node.keys()]).toEqual([NODE]);
    // Typed like list items: the generated model's fields are there after the watch too.
    expect(handler.objects.Service.get('ns1/web')?.metadata?.creationTimestamp).toBeInstanceOf(Date);

    for (const r of server.requestsOf('list', 'services').concat(server.requestsOf('list', 'endpointslices'))) {
      expect(r.query.labelSelector).toBe(PROXIED_OBJECTS_LABEL_SELECTOR);
    }
    expect(server.requestsOf('list', 'nodes')[0]?.query.fieldSelector).toBe(`metadata.name=${NODE}`);
    await waitFor('three watches', () => server.activeWatches() === 3);
    for (const r of server.requestsOf('watch')) expect(r.query.allowWatchBookmarks).toBe('true');

    // Longer than the idle timeout with no change: bookmarks alone keep the watchdog quiet.
    await new Promise((r) => setTimeout(r, WATCHDOG.idleTimeoutMs! * 1.6));
    expect(await restarts(registry)).toEqual({});
    expect(server.requestsOf('list')).toHaveLength(3);
  });

  it('delivers adds, updates with the previous object, deletes, and selector moves', async () => {
    await (await start()).ready;
    await converged();
    const mark = handler.calls.length;

    const oldWeb = handler.objects.Service.get('ns1/web');
    server.apply('services', service('ns1', 'api'));
    server.apply('services', service('ns1', 'web', { sessionAffinity: 'ClientIP' }));
    server.apply('endpointslices', endpointSlice('ns1', 'web', { endpoints: ['10.180.0.1'] }));
    server.delete('endpointslices', 'ns1', 'db-abcde');
    // Labelled for another proxy: leaves the selection, so it is a delete for us.
    server.apply('services', service('ns1', 'db', { labels: { [LABEL_SERVICE_PROXY_NAME]: 'someone-else' } }));
    server.apply('nodes', node(NODE, { zone: 'z2' }));
    server.apply('nodes', node('node-b', { zone: 'z9' }));
    await converged();

    const calls = handler.callsSince(mark).map((c) => `${c.kind} ${c.op} ${c.key}`);
    expect(calls.sort()).toEqual(
      ['Service add ns1/api', 'Service update ns1/web', 'EndpointSlice update ns1/web-abcde', 'EndpointSlice delete ns1/db-abcde', 'Service delete ns1/db', 'Node update node-a'].sort(),
    );
    const webUpdate = handler.callsSince(mark).find((c) => c.op === 'update' && c.key === 'ns1/web');
    expect(webUpdate?.old).toBe(oldWeb);
    expect((webUpdate?.obj as { spec?: { sessionAffinity?: string } }).spec?.sessionAffinity).toBe('ClientIP');

    server.delete('nodes', undefined, NODE);
    await converged();
    expect(handler.objects.Node.size).toBe(0);
  });

  it('resumes after a watch is closed by the server, and restarts with backoff after a reset connection', async () => {
    await (await start()).ready;
    await converged();
    await waitFor('three watches', () => server.activeWatches() === 3);

    // A clean close (as at timeoutSeconds) re-watches from the last resourceVersion: no relist.
    expect(server.dropWatches('end')).toBe(3);
    server.apply('services', service('ns1', 'after-close'));
    await converged();
    expect(server.requestsOf('list')).toHaveLength(3);
    expect(await restarts(registry)).toEqual({});

    // A broken connection stops client-node's informer: ours is rebuilt, relists, and emits only the difference.
    await waitFor('three watches', () => server.activeWatches() === 3);
    const mark = handler.calls.length;
    expect(server.dropWatches('reset')).toBe(3);
    server.apply('services', service('ns1', 'during-reset'));
    server.delete('services', 'ns1', 'after-close');
    await converged();
    await waitFor('relists', () => server.requestsOf('list').length >= 6);
    expect(handler.callsSince(mark).map((c) => `${c.kind} ${c.op} ${c.key}`).sort()).toEqual(['Service add ns1/during-reset', 'Service delete ns1/after-close']);
    const counted = await restarts(registry);
    expect(counted).toEqual({ services: 1, endpointslices: 1, nodes: 1 });
    expect(logger.at('warn').filter((e) => e.msg === 'restarting informer')).toHaveLength(3);
  });

  it.each(['event', 'status'] as const)('relists after 410 Gone (expired watch as %s) and emits only real differences', async (expiredWatch) => {
    await server.close();
    server = await TestApiServer.start({ bookmarkIntervalMs: 100, expiredWatch });
    seed();
    await (await start()).ready;
    await converged();
    await waitFor('three watches', () => server.activeWatches() === 3);

    // Changes the client does not see, then compaction past its resourceVersion, then a clean
    // close: the re-watch from the old resourceVersion is answered with 410.
    server.stallWatches();
    const oldDb = handler.objects.Service.get('ns1/db');
    server.apply('services', service('ns1', 'db', { sessionAffinity: 'ClientIP' }));
    server.apply('services', service('ns3', 'new'));
    server.delete('endpointslices', 'ns1', 'web-abcde');
    server.compact();
    const mark = handler.calls.length;
    server.dropWatches('end');
    await converged();

    const calls = handler.callsSince(mark);
    expect(calls.map((c) => `${c.kind} ${c.op} ${c.key}`).sort()).toEqual(['EndpointSlice delete ns1/web-abcde', 'Service add ns3/new', 'Service update ns1/db']);
    expect(calls.find((c) => c.key === 'ns1/db')?.old).toBe(oldDb);
    expect(server.requestsOf('list').length).toBeGreaterThanOrEqual(6);
    expect(logger.entries.some((e) => e.msg === 'watch expired (410); relisting')).toBe(true);
    // 410 is the informer's normal path: not a restart.
    expect(await restarts(registry)).toEqual({});
  });

  it('catches a stalled watch with the watchdog, restarts it and catches up', async () => {
    await (await start()).ready;
    await converged();
    await waitFor('three watches', () => server.activeWatches() === 3);

    expect(server.stallWatches()).toBe(3);
    server.apply('services', service('ns1', 'while-stalled'));
    server.apply('endpointslices', endpointSlice('ns1', 'while-stalled', { endpoints: ['10.180.0.7'] }));
    server.apply('nodes', node(NODE, { zone: 'z3' }));
    await converged();

    expect(await restarts(registry)).toEqual({ services: 1, endpointslices: 1, nodes: 1 });
    const lines = logger.at('warn').filter((e) => e.msg === 'restarting informer');
    expect(lines.map((e) => e.fields.resource).sort()).toEqual(['endpointslices', 'nodes', 'services']);
    expect(String(lines[0]?.fields.reason)).toMatch(/^no event for 500 ms/);
  });

  it('retries failing lists with backoff before the first sync, and only then reports ready', async () => {
    server.failRequests({ status: 500, verb: 'list', resource: 'services', count: 2 });
    server.failRequests({ status: 403, verb: 'watch', resource: 'nodes', count: 1 });
    server.setLatency({ list: 50 });
    const s = await start();
    await s.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await converged();
    expect(await restarts(registry)).toEqual({ services: 2, nodes: 1 });
  });
});

function sortKeys(o: Record<string, string | undefined>): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}
