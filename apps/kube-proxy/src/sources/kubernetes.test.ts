// The Kubernetes source through the real client-node informers, against the in-repo API server.
// Every scenario ends by checking that the handler holds exactly the server's objects (as
// selected by kube-proxy's selectors) and that every update carried the previously delivered object.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ProxyEventHandler, ProxyStateTracker } from '@kube-proxy-ts/core';
import { endpointSlice, node, service, createTestLogger, type TestLogger } from '@kube-proxy-ts/testing';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingHandler, type RecordedKind, type FailureRule, type ResourceName, type StoredObject, TestApiServer, serviceCIDR, writeKubeconfig } from '@kube-proxy-ts/testing/apiserver';
import { LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME, PROXIED_OBJECTS_LABEL_SELECTOR } from './kinds.js';
import { WATCH_IDLE_TIMEOUT_ENV, startKubernetesSource, watchdogFromEnvironment } from './kubernetes.js';
import { loadClusterAccess } from './kubeconfig.js';
import { toTyped } from './typed.js';
import type { Source, WatchdogOptions } from './types.js';

const NODE = 'node-a';
// The idle timeout leaves room for a loaded machine; bookmarks come every 100 ms.
const WATCHDOG: WatchdogOptions = { idleTimeoutMs: 1000, initialBackoffMs: 20, maxBackoffMs: 80, jitter: 0.2, watchTimeoutSeconds: 30 };

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

  async function start(listPageSize?: number, also?: ProxyEventHandler): Promise<Source> {
    const cluster = loadClusterAccess(await writeKubeconfig(dir, server.url));
    source = startKubernetesSource({ cluster, nodeName: NODE, handler: also ? fanOut(handler, also) : handler, logger, metrics: registry, watchdog: WATCHDOG, ...(listPageSize ? { listPageSize } : {}) });
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
    try {
      await source?.stop();
      source = undefined;
      await server.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("lists with upstream's selectors, syncs, and keeps quiet watches alive through bookmarks", async () => {
    const s = await start(1);
    await s.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await converged();
    // The first list asks for resourceVersion 0, which the API server answers whole from its watch cache.
    expect(server.requestsOf('list', 'services').map((r) => [r.query.resourceVersion, r.query.continue !== undefined])).toEqual([['0', false]]);
    expect([...handler.objects.Service.keys()].sort()).toEqual(['ns1/db', 'ns1/web']);
    expect([...handler.objects.EndpointSlice.keys()].sort()).toEqual(['ns1/db-abcde', 'ns1/web-abcde']);
    expect([...handler.objects.Node.keys()]).toEqual([NODE]);
    // Listed and watched objects alike arrive compact: what a proxy reads, not uid or timestamps.
    const web = handler.objects.Service.get('ns1/web');
    expect(web?.metadata?.resourceVersion).toBeTypeOf('string');
    expect(web?.metadata?.uid).toBeUndefined();
    expect(web?.metadata?.creationTimestamp).toBeUndefined();

    for (const r of server.requestsOf('list', 'services').concat(server.requestsOf('list', 'endpointslices'))) {
      expect(r.query.labelSelector).toBe(PROXIED_OBJECTS_LABEL_SELECTOR);
    }
    expect(server.requestsOf('list', 'nodes')[0]?.query.fieldSelector).toBe(`metadata.name=${NODE}`);
    await waitFor('three watches', () => server.activeWatches() === 3);
    for (const r of server.requestsOf('watch')) expect(r.query.allowWatchBookmarks).toBe('true');

    // Longer than the idle timeout with no change: bookmarks alone keep the watchdog quiet.
    await new Promise((r) => setTimeout(r, WATCHDOG.idleTimeoutMs! + 300));
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
    await (await start(1)).ready;
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
    // A relist reads the current state (not the cache's), page by page (one object per page here).
    const relists = server.requestsOf('list', 'services').slice(1);
    expect(relists.map((r) => r.query.resourceVersion)).toEqual(relists.map(() => undefined));
    expect(relists.map((r) => r.query.continue !== undefined)).toEqual(relists.map((_, i) => i > 0));
    expect(handler.callsSince(mark).map((c) => `${c.kind} ${c.op} ${c.key}`).sort()).toEqual(['Service add ns1/during-reset', 'Service delete ns1/after-close']);
    const counted = await restarts(registry);
    expect(counted).toEqual({ services: 1, endpointslices: 1, nodes: 1 });
    // Restarted because client-node's informer stopped on the error, not later by the watchdog.
    const lines = logger.at('warn').filter((e) => e.msg === 'restarting informer');
    expect(lines.map((e) => String(e.fields.reason).split(':')[0])).toEqual(['informer stopped', 'informer stopped', 'informer stopped']);
  });

  it('loses nothing across a slow re-watch: events in the gap are replayed from the resourceVersion', async () => {
    await (await start()).ready;
    await waitFor('three watches', () => server.activeWatches() === 3);
    server.setLatency({ watch: 300 });
    server.dropWatches('end');
    server.apply('services', service('ns1', 'in-the-gap'));
    server.delete('services', 'ns1', 'web');
    server.apply('endpointslices', endpointSlice('ns1', 'db', { endpoints: ['10.180.0.4'] }));
    await converged();
    expect(server.requestsOf('list')).toHaveLength(3);
    expect(await restarts(registry)).toEqual({});
  });

  it('backs off and relists after an ERROR event other than 410 instead of re-watching in a loop', async () => {
    await (await start()).ready;
    await waitFor('three watches', () => server.activeWatches() === 3);
    expect(server.failWatches(500, 'etcdserver: request timed out', 'services')).toBe(1);
    server.apply('services', service('ns1', 'after-error'));
    await converged();
    expect(await restarts(registry)).toEqual({ services: 1 });
    const line = logger.at('warn').find((e) => e.msg === 'restarting informer');
    expect(line?.fields.reason).toBe('informer stopped: watch error: etcdserver: request timed out (500)');
    expect(server.requestsOf('list', 'services')).toHaveLength(2);
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
    // Every resource relists (the Node's had nothing to change, so converging did not wait for it).
    await waitFor('three relists', () => server.requestsOf('list').length === 6);
    expect(logger.entries.filter((e) => e.msg === 'watch expired (410); relisting')).toHaveLength(3);
    // 410 is the informer's normal path: not a restart.
    expect(await restarts(registry), JSON.stringify(logger.at('warn'))).toEqual({});
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
    expect(String(lines[0]?.fields.reason)).toMatch(/^no event for 1000 ms/);
  });

  it('lists again every configSyncPeriod and applies what a silent watch missed', async () => {
    const cluster = loadClusterAccess(await writeKubeconfig(dir, server.url));
    // The watchdog would not notice within the test: only the resync can.
    source = startKubernetesSource({ cluster, nodeName: NODE, handler, logger, metrics: registry, watchdog: { ...WATCHDOG, idleTimeoutMs: 60_000 }, resyncPeriodMs: 400 });
    await source.ready;
    await waitFor('three watches', () => server.activeWatches() === 3);
    const listsBefore = server.requestsOf('list', 'services').length;
    expect(server.stallWatches()).toBe(3);
    server.apply('services', service('ns1', 'missed'));
    await waitFor('the service the watch never delivered', () => 'ns1/missed' in handler.versions('Service'), 3000);
    expect(server.requestsOf('list', 'services').length).toBeGreaterThan(listsBefore);
    // Not older than what was seen, whole: what the API server answers from its watch cache.
    const resync = server.requestsOf('list', 'services').slice(listsBefore)[0]!.query;
    expect([resync.resourceVersionMatch, resync.limit, Number(resync.resourceVersion) > 0]).toEqual(['NotOlderThan', undefined, true]);
    expect(logger.at('warn').filter((e) => e.msg === 'resync found changes the watch had not delivered').map((e) => [e.fields.resource, e.fields.added])).toContainEqual(['services', 1]);
    // A resync is not a failure.
    expect(await restarts(registry)).toEqual({});
  });

  it('takes the idle timeout from KUBE_PROXY_WATCH_IDLE_TIMEOUT when the daemon sets none', async () => {
    const saved = process.env[WATCH_IDLE_TIMEOUT_ENV];
    process.env[WATCH_IDLE_TIMEOUT_ENV] = '1s';
    try {
      const cluster = loadClusterAccess(await writeKubeconfig(dir, server.url));
      source = startKubernetesSource({ cluster, nodeName: NODE, handler, logger, metrics: registry });
      await source.ready;
      await waitFor('three watches', () => server.activeWatches() === 3);
      server.stallWatches();
      server.apply('services', service('ns1', 'while-stalled'));
      // 1 s idle, then the default first backoff (1 s, up to +50 %).
      await waitFor('the stalled watches to be restarted', () => logger.at('warn').filter((e) => e.msg === 'restarting informer').length === 3, 6000);
      expect(String(logger.at('warn').find((e) => e.msg === 'restarting informer')?.fields.reason)).toMatch(/^no event for 1000 ms/);
      await waitFor('the service created while stalled', () => 'ns1/while-stalled' in handler.versions('Service'), 6000);
    } finally {
      if (saved === undefined) delete process.env[WATCH_IDLE_TIMEOUT_ENV];
      else process.env[WATCH_IDLE_TIMEOUT_ENV] = saved;
    }
  });

  it('retries failing lists with backoff before the first sync, and only then reports ready', async () => {
    server.failRequests({ status: 500, verb: 'list', resource: 'services', count: 2 });
    server.failRequests({ status: 403, verb: 'watch', resource: 'nodes', count: 1 });
    server.setLatency({ list: 50 });
    const s = await start();
    await s.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await converged();
    // The Node's watch fails after its list, so possibly after ready: wait for all three restarts.
    const restartLines = () => logger.at('warn').filter((e) => e.msg === 'restarting informer');
    await waitFor('three restarts', () => restartLines().length >= 3);
    await waitFor('the Node watch back', () => server.activeWatches('nodes') === 1);
    expect(await restarts(registry)).toEqual({ services: 2, nodes: 1 });
    const reasons = restartLines().map((e) => String(e.fields.reason));
    expect(reasons).toHaveLength(3);
    for (const reason of reasons) expect(reason).toMatch(/^informer stopped: .*\((500|403)\)$/);
  });

  it("keeps core's ProxyStateTracker equal to the server's state through a stall, a reset and a 410 relist", async () => {
    const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE, logger });
    await (await start(undefined, tracker)).ready;
    expect(tracker.isSynced()).toBe(true);
    tracker.checkpoint();

    const truth = () => {
      const fresh = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
      for (const [kind, resource] of KINDS) {
        for (const o of server.list(resource)) {
          const labels = o.metadata.labels ?? {};
          if (kind !== 'Node' && (LABEL_SERVICE_PROXY_NAME in labels || LABEL_HEADLESS in labels)) continue;
          if (kind === 'Service') fresh.onServiceAdd(toTyped('Service', o));
          else if (kind === 'EndpointSlice') fresh.onEndpointSliceAdd(toTyped('EndpointSlice', o));
          else fresh.onNodeAdd(toTyped('Node', o));
        }
      }
      return fresh.checkpoint().state;
    };
    const expectTrackerMatches = async () => {
      await converged();
      const { state } = tracker.checkpoint();
      const want = truth();
      expect([...state.services.entries()].sort()).toEqual([...want.services.entries()].sort());
      expect([...state.endpoints.entries()].sort()).toEqual([...want.endpoints.entries()].sort());
      expect(state.node).toEqual(want.node);
    };
    await expectTrackerMatches();

    await waitFor('three watches', () => server.activeWatches() === 3);
    server.stallWatches();
    server.apply('endpointslices', endpointSlice('ns1', 'web', { endpoints: ['10.180.0.1', '10.180.0.5'] }));
    server.delete('services', 'ns1', 'db');
    await expectTrackerMatches();

    await waitFor('three watches', () => server.activeWatches() === 3);
    server.dropWatches('reset');
    server.apply('services', service('ns1', 'web', { ports: [{ name: 'p80', port: 80 }, { name: 'p443', port: 443 }] }));
    await expectTrackerMatches();

    await waitFor('three watches', () => server.activeWatches() === 3);
    server.stallWatches();
    server.apply('endpointslices', endpointSlice('ns1', 'web', { endpoints: ['10.180.0.5'], ports: [{ name: 'p80', port: 80 }, { name: 'p443', port: 443 }] }));
    server.apply('nodes', node(NODE, { zone: 'z7' }));
    server.compact();
    server.dropWatches('end');
    await expectTrackerMatches();
    expect(tracker.checkpoint().state.endpoints.get('ns1/web:p443/TCP')?.map((e) => e.ip)).toEqual(['10.180.0.5']);
  });
});

describe('Kubernetes source: ServiceCIDRs', () => {
  let server: TestApiServer;
  let dir: string;
  let source: Source | undefined;

  async function start(served?: ResourceName[], failures: FailureRule[] = []) {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100, ...(served ? { served } : {}) });
    server.apply('nodes', node(NODE));
    for (const rule of failures) server.failRequests(rule);
    const handler = new RecordingHandler();
    const logger = createTestLogger();
    const registry = new Registry();
    const cluster = loadClusterAccess(await writeKubeconfig(dir, server.url));
    source = startKubernetesSource({ cluster, nodeName: NODE, handler, logger, metrics: registry, watchdog: WATCHDOG });
    return { handler, logger, registry, source };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpts-sources-cidr-'));
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('hands over the union of every ServiceCIDR, after each change of it only', async () => {
    const { handler, source } = await start(['services', 'endpointslices', 'nodes', 'servicecidrs']);
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/16', 'fd00:10:96::/112']));
    await source.ready;
    const last = () => handler.serviceCIDRs.at(-1);
    await waitFor('the first ServiceCIDR', () => last()?.length === 2);
    expect(last()).toEqual(['10.96.0.0/16', 'fd00:10:96::/112']);
    expect(server.requestsOf('list', 'servicecidrs')[0]?.query.labelSelector).toBeUndefined();

    // A second object, sharing one range: the union holds each range once, and keeps it while any object does.
    server.apply('servicecidrs', serviceCIDR('extra', ['10.100.0.0/16', '10.96.0.0/16']));
    await waitFor('the second ServiceCIDR', () => last()?.length === 3);
    expect(last()).toEqual(['10.100.0.0/16', '10.96.0.0/16', 'fd00:10:96::/112']);
    server.delete('servicecidrs', undefined, 'kubernetes');
    await waitFor('the delete', () => last()?.length === 2);
    expect(last()).toEqual(['10.100.0.0/16', '10.96.0.0/16']);

    // A status-only update leaves the union as it was: no call. The next change (same watch, so
    // delivered after it) is the only one.
    const calls = handler.serviceCIDRs.length;
    server.apply('servicecidrs', { ...serviceCIDR('extra', ['10.100.0.0/16', '10.96.0.0/16']), status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    server.apply('servicecidrs', serviceCIDR('later', ['10.200.0.0/16']));
    await waitFor('the later ServiceCIDR', () => last()?.length === 3);
    expect(handler.serviceCIDRs.slice(calls)).toEqual([['10.100.0.0/16', '10.200.0.0/16', '10.96.0.0/16']]);
  });

  it('starts without the ServiceCIDR API (404): ready, said once, no restart', async () => {
    const { handler, logger, registry, source } = await start();
    await source.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await waitFor('the 404 to be noted', () => logger.entries.some((e) => e.msg === 'the API server does not serve this resource; going on without it'));
    await new Promise((r) => setTimeout(r, 300));
    const notes = logger.entries.filter((e) => e.msg === 'the API server does not serve this resource; going on without it');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ level: 'info', fields: { resource: 'servicecidrs', path: '/apis/networking.k8s.io/v1/servicecidrs' } });
    expect(logger.at('warn')).toEqual([]);
    expect(await restarts(registry)).toEqual({});
    expect(handler.serviceCIDRs).toEqual([]);
    // The other informers work as usual.
    server.apply('services', service('ns1', 'web'));
    await waitFor('the Service', () => handler.objects.Service.has('ns1/web'));
  });

  it('starts when RBAC forbids listing ServiceCIDRs (403): ready, one warning, no restart, retries slowing down', async () => {
    const forbidden: FailureRule = { status: 403, verb: 'list', resource: 'servicecidrs', count: 1000 };
    const { handler, logger, registry, source } = await start(['services', 'endpointslices', 'nodes', 'servicecidrs'], [forbidden]);
    await source.ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    await waitFor('the 403 to be noted', () => logger.at('warn').length > 0);
    await new Promise((r) => setTimeout(r, 400));
    expect(logger.at('warn')).toMatchObject([{ msg: 'not allowed to list this resource (RBAC); going on without it', fields: { resource: 'servicecidrs' } }]);
    expect(await restarts(registry)).toEqual({});
    // Delays from the first backoff (20 ms here) doubling: a handful of lists, not one per backoff ceiling.
    const lists = server.requestsOf('list', 'servicecidrs').length;
    expect(lists).toBeGreaterThanOrEqual(2);
    expect(lists).toBeLessThanOrEqual(6);
    expect(handler.serviceCIDRs).toEqual([]);
  });

  it('picks ServiceCIDRs up soon after a 403 of a starting kube-apiserver (RBAC caches not filled yet)', async () => {
    const starting: FailureRule = { status: 403, verb: 'list', resource: 'servicecidrs', count: 2 };
    const { handler, logger, registry, source } = await start(['services', 'endpointslices', 'nodes', 'servicecidrs'], [starting]);
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/16']));
    await source.ready;
    await waitFor('the ServiceCIDRs after the 403s', () => handler.serviceCIDRs.at(-1)?.length === 1, 2000);
    expect(logger.at('warn')).toHaveLength(1);
    expect(logger.entries.some((e) => e.msg === 'the API server serves this resource now')).toBe(true);
    expect(await restarts(registry)).toEqual({});
  });
});

/** Calls every handler in turn. */
function fanOut(...handlers: ProxyEventHandler[]): ProxyEventHandler {
  const out: Partial<Record<keyof ProxyEventHandler, unknown>> = {};
  const methods: Array<keyof ProxyEventHandler> = [
    'onServiceAdd', 'onServiceUpdate', 'onServiceDelete', 'onServicesSynced',
    'onEndpointSliceAdd', 'onEndpointSliceUpdate', 'onEndpointSliceDelete', 'onEndpointSlicesSynced',
    'onNodeAdd', 'onNodeUpdate', 'onNodeDelete', 'onNodeSynced', 'onServiceCIDRsChanged',
  ];
  for (const m of methods) {
    out[m] = (...args: unknown[]) => {
      for (const h of handlers) (h[m] as (...a: unknown[]) => void).apply(h, args);
    };
  }
  return out as ProxyEventHandler;
}

function sortKeys(o: Record<string, string | undefined>): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

describe('watchdogFromEnvironment', () => {
  it('reads a Go duration, and logs and ignores anything that is not one of at least 1 s', () => {
    const logger = createTestLogger();
    expect(watchdogFromEnvironment({}, logger)).toEqual({});
    expect(watchdogFromEnvironment({ [WATCH_IDLE_TIMEOUT_ENV]: '45s' }, logger)).toEqual({ idleTimeoutMs: 45_000 });
    expect(watchdogFromEnvironment({ [WATCH_IDLE_TIMEOUT_ENV]: '1m30s' }, logger)).toEqual({ idleTimeoutMs: 90_000 });
    for (const bad of ['45', 'soon', '500ms', '-1m']) expect(watchdogFromEnvironment({ [WATCH_IDLE_TIMEOUT_ENV]: bad }, logger), bad).toEqual({});
    expect(logger.at('warn')).toHaveLength(4);
  });
});
