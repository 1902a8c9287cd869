import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultProxyConfig, ProxyStateTracker, realClock, type ProxyConfig, type ProxyEventHandler, type ProxyState } from '@kube-proxy-ts/core';
import { createTestLogger, endpointSlice, node, recordingBackends, RecordingBackend, service } from '@kube-proxy-ts/testing';
import { BackendLoadError, loadBackendFactory } from './backend-loader.js';
import { Daemon, healthCheckHosts, StartupError } from './daemon.js';
import { createRegistry } from './metrics.js';
import { chooseFamilies } from './families.js';
import { missingRequirements } from './requirements.js';
import { cleanupAll } from './cleanup.js';
import type { NodeEvent } from '../sources/node-events.js';

/** A source the test drives by hand. */
function fakeSource() {
  const s: { handler: ProxyEventHandler | undefined; stopped: boolean; events: NodeEvent[] } = { handler: undefined, stopped: false, events: [] };
  return {
    s,
    start: (h: ProxyEventHandler) => {
      s.handler = h;
      return { stop: () => void (s.stopped = true), recordNodeEvent: (e: NodeEvent) => void s.events.push(e) };
    },
  };
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

function setup(over: Partial<ProxyConfig> = {}, extra: { requirements?: string[]; failingBackends?: boolean; onSourcesSynced?: () => void; onFirstSync?: () => void } = {}) {
  const config: ProxyConfig = { ...defaultProxyConfig(), healthzBindAddress: '127.0.0.1:0', metricsBindAddress: '127.0.0.1:0', minSyncPeriod: 0, syncPeriod: 200, ...over };
  const { factory, backends } = recordingBackends();
  const src = fakeSource();
  const logger = createTestLogger();
  const registry = createRegistry();
  const daemon = new Daemon({
    config,
    nodeName: 'node1',
    logger,
    registry,
    runner: { run: async () => ({ code: 0, stdout: '', stderr: '' }) },
    clock: realClock,
    loadFactory: async () =>
      extra.failingBackends
        ? (o) => {
            const b = factory(o) as RecordingBackend;
            b.fail = true;
            return b;
          }
        : factory,
    createTracker: (ipFamily, nodeName) => new ProxyStateTracker({ ipFamily, nodeName }),
    startSource: src.start,
    checkRequirements: async () => extra.requirements ?? [],
    ...(extra.onSourcesSynced ? { onSourcesSynced: extra.onSourcesSynced } : {}),
    ...(extra.onFirstSync ? { onFirstSync: extra.onFirstSync } : {}),
  });
  daemons.push(daemon);
  return { daemon, backends, src, registry, logger, config };
}

/** Starts the daemon and waits until its event source is running. */
async function startDaemon(daemon: Daemon, src: ReturnType<typeof fakeSource>) {
  const started = daemon.start();
  await until(() => src.s.handler !== undefined);
  return { started, h: src.s.handler as ProxyEventHandler };
}

/** Reports every informer synced, adding `nodeObject` first when given. */
function markSynced(h: ProxyEventHandler, nodeObject?: ReturnType<typeof node>) {
  h.onServicesSynced();
  h.onEndpointSlicesSynced();
  if (nodeObject) h.onNodeAdd(nodeObject);
  h.onNodeSynced();
}

const web = () => service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
const webSlice = (ips: string[]) => endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ips, ports: [{ name: 'http', port: 8080 }] });

async function healthz(d: Daemon, path = '/healthz') {
  const a = d.healthzAddress;
  if (!a) throw new Error('no healthz server');
  return fetch(`http://127.0.0.1:${a.port}${path}`);
}

describe('daemon assembly', () => {
  it('syncs only after Services, EndpointSlices and the Node are synced, then follows changes', async () => {
    const { daemon, backends, src, registry } = setup();
    const { started, h } = await startDaemon(daemon, src);
    h.onServiceAdd(web());
    h.onServicesSynced();
    h.onEndpointSliceAdd(webSlice(['10.244.1.11', '10.244.1.12']));
    h.onEndpointSlicesSynced();
    await new Promise((r) => setTimeout(r, 50));
    expect(backends).toHaveLength(0); // the node has not synced yet: no backend, no flush
    h.onNodeAdd(node('node1', { addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] }));
    h.onNodeSynced();
    await started;

    expect(backends.map((b) => b.family)).toEqual(['IPv4']);
    const b = backends[0] as RecordingBackend;
    expect(b.ctx?.node).toMatchObject({ name: 'node1', addresses: ['192.168.50.1'] });
    await until(() => b.syncs.length >= 1);
    const first = b.syncs[0] as { state: ProxyState };
    expect([...first.state.services.keys()]).toEqual(['ns1/web:http/TCP']);
    expect(first.state.endpoints.get('ns1/web:http/TCP')?.map((e) => e.hostPort)).toEqual(['10.244.1.11:8080', '10.244.1.12:8080']);

    // An endpoint change reaches the backend with the changed key.
    const before = b.syncs.length;
    h.onEndpointSliceUpdate(webSlice(['10.244.1.11', '10.244.1.12']), webSlice(['10.244.1.13']));
    await until(() => b.syncs.some((s, i) => i >= before && s.changes.servicePorts.has('ns1/web:http/TCP')));
    const last = b.syncs.at(-1) as { state: ProxyState };
    expect(last.state.endpoints.get('ns1/web:http/TCP')?.map((e) => e.hostPort)).toEqual(['10.244.1.13:8080']);

    expect((await healthz(daemon)).status).toBe(200);
    const text = await registry.metrics();
    expect(text).toMatch(/kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} [1-9]/);
    expect(text).toMatch(/kubeproxy_sync_full_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} 1/);
    expect(text).toMatch(/kubeproxy_sync_proxy_rules_endpoint_changes_total\{ip_family="IPv4"\} 2/);
    expect(text).toMatch(/kubeproxy_sync_proxy_rules_last_timestamp_seconds\{ip_family="IPv4"\} \d/);

    // SIGTERM-like stop: backends stop, nothing is cleaned up.
    await daemon.stop();
    expect(b.stopped).toBe(1);
    expect(b.cleaned).toBe(0);
    expect(src.s.stopped).toBe(true);
  });

  it('calls onSourcesSynced once, after the initial lists and before the first backend starts', async () => {
    const seen: number[] = [];
    const { daemon, backends, src } = setup({}, { onSourcesSynced: () => seen.push(backends.length) });
    const { started, h } = await startDaemon(daemon, src);
    h.onServiceAdd(web());
    h.onServicesSynced();
    h.onEndpointSlicesSynced();
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]);
    h.onNodeAdd(node('node1', { addresses: ['192.168.50.1'] }));
    h.onNodeSynced();
    await started;
    h.onServiceAdd(service('ns1', 'db', { clusterIP: '10.96.0.20', ports: [{ port: 5432 }] }));
    await until(() => (backends[0]?.syncs.length ?? 0) >= 1);
    expect(seen).toEqual([0]);
  });

  it('calls onFirstSync once, when the first sync of every family succeeded, not after a failed one', async () => {
    let calls = 0;
    const seen: number[] = [];
    const { daemon, backends, src } = setup({}, { failingBackends: true, onFirstSync: () => seen.push(++calls) });
    const { started, h } = await startDaemon(daemon, src);
    markSynced(h, node('node1', { addresses: ['192.168.50.1', 'fd00::1'] }));
    await started;
    expect(backends.map((b) => b.family).sort()).toEqual(['IPv4', 'IPv6']);
    await until(() => backends.every((b) => b.syncs.length >= 1));
    expect(seen).toEqual([]);
    backends[0]!.fail = false;
    h.onServiceAdd(web());
    await until(() => backends[0]!.syncs.length >= 2);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]);
    backends[1]!.fail = false;
    h.onServiceAdd(service('ns1', 'db', { clusterIP: '10.96.0.20', ports: [{ port: 5432 }] }));
    await until(() => seen.length === 1);
    const syncs = backends.map((b) => b.syncs.length);
    h.onServiceAdd(service('ns1', 'cache', { clusterIP: '10.96.0.30', ports: [{ port: 6379 }] }));
    await until(() => backends.every((b, i) => b.syncs.length > syncs[i]!));
    expect(seen).toEqual([1]);
  });

  it('records "Starting" on the Node when the proxy starts, after a warning for a server that could not listen', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const { daemon, backends, src } = setup({ metricsBindAddress: `127.0.0.1:${(taken.address() as AddressInfo).port}` });
      const { started, h } = await startDaemon(daemon, src);
      expect(src.s.events.map((e) => [e.type, e.reason, e.action])).toEqual([['Warning', 'FailedToStartMetricServer', 'StartKubeProxy']]);
      expect(src.s.events[0]?.note).toMatch(/EADDRINUSE/);
      markSynced(h, node('node1', { addresses: ['192.168.50.1'] }));
      await started;
      expect(backends).toHaveLength(1);
      expect(src.s.events.map((e) => [e.type, e.reason, e.action])).toEqual([
        ['Warning', 'FailedToStartMetricServer', 'StartKubeProxy'],
        ['Normal', 'Starting', 'StartKubeProxy'],
      ]);
    } finally {
      taken.close();
    }
  });

  it('keeps the changes of a failed sync for the retry, and /healthz turns 503 then back to 200', async () => {
    const { daemon, backends, src } = setup({ syncPeriod: 300 });
    const { started, h } = await startDaemon(daemon, src);
    markSynced(h);
    await started;
    const b = backends[0] as RecordingBackend;
    await until(() => b.syncs.length >= 1);

    b.fail = true;
    const failedFrom = b.syncs.length;
    h.onServiceAdd(web());
    await until(() => b.syncs.length > failedFrom + 1);
    // Every retry still carries the service that moved.
    for (const s of b.syncs.slice(failedFrom)) expect(s.changes.servicePorts.has('ns1/web:http/TCP')).toBe(true);
    // Health timeout is 2 x syncPeriod = 600 ms.
    await new Promise((r) => setTimeout(r, 650));
    const bad = await healthz(daemon);
    expect(bad.status).toBe(503);
    expect((await healthz(daemon, '/livez')).status).toBe(503);

    const oks = b.oks;
    b.fail = false;
    await until(() => b.oks > oks, 5000);
    expect((await healthz(daemon)).status).toBe(200);
  });

  it('answers 503 on /healthz and /livez once the first sync has failed for 2 x syncPeriod', async () => {
    const { daemon, backends, src, registry } = setup({ syncPeriod: 300 }, { failingBackends: true });
    const { started, h } = await startDaemon(daemon, src);
    markSynced(h);
    await started;
    const startedAt = Date.now();
    const b = backends[0] as RecordingBackend;
    await until(() => b.syncs.length >= 1);
    expect((await healthz(daemon)).status).toBe(200);
    let status = 200;
    while (status !== 503 && Date.now() - startedAt < 3000) {
      await new Promise((r) => setTimeout(r, 25));
      status = (await healthz(daemon)).status;
    }
    expect(status).toBe(503);
    // Not before the health timeout (2 x 300 ms) has passed since the start.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(600);
    const livez = await healthz(daemon, '/livez');
    expect(livez.status).toBe(503);
    expect(await livez.json()).toEqual({ lastUpdated: expect.stringMatching(/ \+0000 UTC$/), currentTime: expect.stringMatching(/ \+0000 UTC$/) });
    expect(b.oks).toBe(0);
    expect(await registry.metrics()).toMatch(/kubeproxy_proxy_healthz_total\{code="503"\} [1-9]/);
  });

  it('health-check node ports answer 503 once syncs keep failing, even with no change pending', async () => {
    const { daemon, backends, src } = setup({ syncPeriod: 200 });
    const { started, h } = await startDaemon(daemon, src);
    const hcPort = 20000 + Math.floor(Math.random() * 20000);
    h.onServiceAdd(service('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '10.96.0.20', externalTrafficPolicy: 'Local', healthCheckNodePort: hcPort }));
    h.onEndpointSliceAdd(endpointSlice('ns1', 'lb', { endpoints: [{ ip: '10.244.1.11', nodeName: 'node1' }] }));
    markSynced(h, node('node1', { addresses: ['127.0.0.1'] }));
    await started;
    await until(() => daemon.serviceHealthPorts().get('ns1/lb') === hcPort);
    const probe = () => fetch(`http://127.0.0.1:${hcPort}/`);
    expect((await probe()).status).toBe(200);

    (backends[0] as RecordingBackend).fail = true;
    // The periodic sync (every 200 ms) fails; 2 x 200 ms later the proxy is unhealthy.
    let r = await probe();
    for (const end = Date.now() + 3000; r.status === 200 && Date.now() < end; r = await probe()) await new Promise((res) => setTimeout(res, 25));
    expect(r.status).toBe(503);
    expect(JSON.parse(await r.text())).toEqual({ service: { namespace: 'ns1', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: false });
    expect((await healthz(daemon)).status).toBe(503);
  });

  it('runs one backend per IP family of a dual-stack node', async () => {
    const { daemon, backends, src } = setup();
    const { started, h } = await startDaemon(daemon, src);
    markSynced(h, node('node1', { addresses: ['192.168.50.1', 'fd00::1'] }));
    await started;
    expect(backends.map((b) => b.family)).toEqual(['IPv4', 'IPv6']);
    expect(backends[1]?.ctx?.node.addresses).toEqual(['fd00::1']);
  });

  it.each([
    ['on every address', [] as string[], '192.168.50.1'],
    ['on the node addresses inside nodePortAddresses', ['127.0.0.0/8'], '127.0.0.1'],
  ])('serves health-check node ports for externalTrafficPolicy Local services %s', async (_title, nodePortAddresses, nodeIP) => {
    const { daemon, src } = setup({ nodePortAddresses });
    const { started, h } = await startDaemon(daemon, src);
    const hcPort = 20000 + Math.floor(Math.random() * 20000);
    h.onServiceAdd(service('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '10.96.0.20', externalTrafficPolicy: 'Local', healthCheckNodePort: hcPort }));
    h.onEndpointSliceAdd(endpointSlice('ns1', 'lb', { endpoints: [{ ip: '10.244.1.11', nodeName: 'node1' }, { ip: '10.244.2.11', nodeName: 'node2' }] }));
    markSynced(h, node('node1', { addresses: [nodeIP] }));
    await started;
    await until(() => daemon.serviceHealthPorts().get('ns1/lb') === hcPort);
    const r = await fetch(`http://127.0.0.1:${hcPort}/`);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-load-balancing-endpoint-weight')).toBe('1');
    expect(JSON.parse(await r.text())).toEqual({ service: { namespace: 'ns1', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
    h.onServiceDelete(service('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '10.96.0.20', externalTrafficPolicy: 'Local', healthCheckNodePort: hcPort }));
    await until(() => !daemon.serviceHealthPorts().has('ns1/lb'));
  });

  it('refuses to start when the mode lacks a tool, naming it', async () => {
    const { daemon, src } = setup({}, { requirements: ['iptables-restore is not installed or not on PATH'] });
    const { started, h } = await startDaemon(daemon, src);
    markSynced(h);
    await expect(started).rejects.toThrow(StartupError);
    await expect(started).rejects.toThrow(/iptables-restore is not installed/);
  });
});

describe('healthCheckHosts', () => {
  const addresses = (family: string) => (family === 'IPv4' ? ['192.168.50.1', '192.168.60.1'] : ['fd00::1']);
  it('listens where NodePorts are served: every address when unset, but only the primary addresses in nftables mode', () => {
    expect(healthCheckHosts({ nodePortAddresses: [], mode: 'iptables' }, ['IPv4'], addresses)).toEqual(['0.0.0.0']);
    expect(healthCheckHosts({ nodePortAddresses: [], mode: 'ipvs' }, ['IPv4', 'IPv6'], addresses)).toEqual(['::']);
    expect(healthCheckHosts({ nodePortAddresses: [], mode: 'nftables' }, ['IPv4', 'IPv6'], addresses)).toEqual(['192.168.50.1', 'fd00::1']);
    expect(healthCheckHosts({ nodePortAddresses: ['192.168.60.0/24'], mode: 'nftables' }, ['IPv4'], addresses)).toEqual(['192.168.60.1']);
  });
});

describe('backend loading', () => {
  it('loads a default-exported factory by package name', async () => {
    const factory = () => new RecordingBackend('IPv4');
    expect(await loadBackendFactory('@acme/x', async () => ({ default: factory }))).toBe(factory);
    expect(await loadBackendFactory('@acme/x', async () => ({ default: { default: factory } }))).toBe(factory);
  });
  it('says when the package is missing or has no factory', async () => {
    const missing = async (s: string) => {
      throw Object.assign(new Error(`Cannot find package '${s}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    await expect(loadBackendFactory('@acme/nope', missing)).rejects.toThrow(new BackendLoadError('proxy mode "@acme/nope": package @acme/nope is not installed (a mode is iptables, ipvs, nftables, userspace, or the name of an installed backend package)'));
    await expect(loadBackendFactory('iptables', async () => ({ default: 42 }))).rejects.toThrow('proxy mode "iptables": package @kube-proxy-ts/backend-iptables has no default export that is a BackendFactory function');
  });
  it('loads a real package through dynamic import', async () => {
    await expect(loadBackendFactory('definitely-not-installed-kpts-backend')).rejects.toThrow(/is not installed/);
  });
});

describe('families, requirements, cleanup', () => {
  it('chooses families from the bind address, node addresses and cluster CIDR', () => {
    const c = defaultProxyConfig();
    expect(chooseFamilies(c, undefined)).toEqual(['IPv4']);
    expect(chooseFamilies({ ...c, bindAddress: '::' }, node('n', { addresses: ['fd00::1'] }))).toEqual(['IPv6']);
    expect(chooseFamilies({ ...c, clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' }, undefined)).toEqual(['IPv4', 'IPv6']);
    expect(chooseFamilies({ ...c, bindAddress: 'fd00::5' }, node('n', { addresses: ['10.0.0.1'] }))).toEqual(['IPv6', 'IPv4']);
  });

  it('names each missing tool and missing IPVS support', async () => {
    const runner = { run: async (cmd: string) => (cmd === 'ipset' ? Promise.reject(Object.assign(new Error('spawn ipset ENOENT'), { code: 'ENOENT' })) : { code: 0, stdout: '', stderr: '' }) };
    const backend = async (mode: string) => (await loadBackendFactory(mode))({ ipFamily: 'IPv4', config: defaultProxyConfig() });
    expect(await missingRequirements(await backend('iptables'), { runner })).toEqual([]);
    expect(await missingRequirements(await backend('ipvs'), { runner, exists: () => false })).toEqual([
      'ipset is not installed or not on PATH (the ipvs mode uses it: it holds the IPVS-mode address sets)',
      '/proc/net/ip_vs is missing: the kernel has no IPVS support (load the ip_vs module, or use --proxy-mode=iptables or nftables)',
    ]);
    // What each built-in mode runs, as it declares it.
    expect((await backend('nftables')).requirements?.map((r) => ('tool' in r ? r.tool : r.path))).toEqual(['nft']);
    expect((await backend('userspace')).requirements?.map((r) => ('tool' in r ? r.tool : r.path))).toEqual(['iptables-restore', 'iptables-save', 'iptables']);
  });

  it('--cleanup runs cleanup() of every built-in mode and family, reporting failures', async () => {
    const made = recordingBackends();
    const failures = await cleanupAll({
      config: defaultProxyConfig(),
      nodeName: 'n',
      logger: createTestLogger(),
      registry: createRegistry(),
      runner: { run: async () => ({ code: 0, stdout: '', stderr: '' }) },
      clock: realClock,
      loadFactory: async (mode) => {
        if (mode === 'userspace') throw new Error('cannot load');
        // The ipvs backends need what this machine lacks.
        return (o) => Object.assign(made.factory(o), mode === 'ipvs' ? { requirements: [{ path: '/proc/net/ip_vs', why: 'IPVS' }] } : {});
      },
      applicable: async (backend) => (backend.requirements ?? []).length === 0,
    });
    expect(made.backends).toHaveLength(6); // iptables, nftables and ipvs, two families each
    // Cleaned without start(): --cleanup hands the context to cleanup().
    expect(made.backends.map((b) => [b.cleaned, b.ctx !== undefined])).toEqual([[1, true], [1, true], [0, false], [0, false], [1, true], [1, true]]);
    expect(failures).toEqual(['userspace: cannot load']);
  });
});
