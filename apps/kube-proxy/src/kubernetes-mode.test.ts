// The whole daemon against an API server: main() with --kubeconfig / --master / --config, the real
// client-node informers, the in-repo API server speaking list/watch, and a recording backend
// installed as a third-party mode (a package whose default export is a BackendFactory).

import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeSet, ProxyState } from '@kube-proxy-ts/core';
import { endpointSlice, node, service, type RecordingBackend } from '@kube-proxy-ts/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resolveOptions } from './cli/options.js';
import { main } from './main.js';
import { loadClusterAccess } from './sources/kubeconfig.js';
import { TestApiServer, serviceCIDR, writeKubeconfig } from '@kube-proxy-ts/testing/apiserver';

// The backend package the daemon loads by mode name. vi.hoisted: the mock factory runs before imports.
const recorded = await vi.hoisted(async () => (await import('@kube-proxy-ts/testing')).recordingBackends());
vi.mock('kpts-recording-backend', () => ({ default: recorded.factory }));
// Safety net: nothing main() starts here may run a command on this machine (a built-in mode
// chosen by mistake would otherwise program the host's own rules).
vi.mock('@kube-proxy-ts/netfilter', async (importOriginal) => ({
  ...(await importOriginal<typeof import('@kube-proxy-ts/netfilter')>()),
  createExecRunner: () => ({
    run: async (cmd: string) => {
      throw new Error(`refusing to run ${cmd} on the host from this test`);
    },
  }),
}));

const WEB = 'ns1/web:http/TCP';
const DB = 'ns1/db:tcp/TCP';
const API = 'ns2/api:https/TCP';
const PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';

async function waitFor(what: string, check: () => boolean, timeoutMs = 4000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port free right now on 127.0.0.1 (main() does not report the ports it bound). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** main() as the CLI runs it, with SIGTERM under the test's control. */
function runMain(argv: string[]) {
  const signals = new Map<string, () => void>();
  let stderr = '';
  const exit = main(argv, { stdout: () => undefined, stderr: (t) => (stderr += t), onSignal: (s, fn) => signals.set(s, fn) });
  return {
    exit,
    stderr: () => stderr,
    /** SIGTERM, then the exit code. */
    async terminate(): Promise<number> {
      const term = signals.get('SIGTERM');
      if (!term) throw new Error('main registered no SIGTERM handler');
      term();
      return exit;
    },
  };
}

// Keep the worker's OOM score as it is (main() applies oomScoreAdj, default -999, when it can).
const ownOOMScoreAdj = (() => {
  try {
    return readFileSync('/proc/self/oom_score_adj', 'utf8').trim();
  } catch {
    return '0';
  }
})();

/**
 * Flags every daemon run here shares: the recording backend, loopback servers, immediate syncs,
 * quiet logs. Port 0 is not a valid bind port (as upstream's validation says), hence free ports.
 */
const commonFlags = (healthzPort: number, metricsPort: number) => [
  '--hostname-override=Node1',
  '--proxy-mode=kpts-recording-backend',
  `--healthz-bind-address=127.0.0.1:${healthzPort}`,
  `--metrics-bind-address=127.0.0.1:${metricsPort}`,
  '--iptables-min-sync-period=0s',
  `--oom-score-adj=${ownOOMScoreAdj}`,
  '--log-level=error',
];

const hostPorts = (state: ProxyState, key: string) => state.endpoints.get(key)?.map((e) => e.hostPort);

describe('kube-proxy against an API server (main --kubeconfig)', () => {
  let server: TestApiServer;
  let dir: string;
  let daemon: ReturnType<typeof runMain>;
  let healthzPort: number;
  let metricsPort: number;
  let backend: RecordingBackend;
  const lastSync = () => backend.syncs.at(-1) as { state: ProxyState; changes: ChangeSet };
  /** Waits for a sync after `from` that satisfies `check`; returns it. */
  async function syncWhere(from: number, what: string, check: (s: { state: ProxyState; changes: ChangeSet }) => boolean) {
    await waitFor(what, () => backend.syncs.slice(from).some(check));
    return backend.syncs.slice(from).find(check) as { state: ProxyState; changes: ChangeSet };
  }

  beforeAll(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    dir = await mkdtemp(join(tmpdir(), 'kpts-kubernetes-mode-'));
    server.apply('nodes', node('node1', { addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'], zone: 'zone-a', labels: { 'example.com/rack': 'r7' } }));
    server.apply('nodes', node('node2', { addresses: ['192.168.50.2'], zone: 'zone-b' }));
    server.apply('services', service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }));
    server.apply('services', service('ns1', 'db', { clusterIP: '10.96.0.20', ports: [{ name: 'tcp', port: 5432, protocol: 'TCP' }] }));
    server.apply('endpointslices', endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.11', '10.244.2.12'], ports: [{ name: 'http', port: 8080 }] }));
    server.apply('endpointslices', endpointSlice('ns1', 'db', { name: 'db-1', endpoints: ['10.244.1.21'], ports: [{ name: 'tcp', port: 5432 }] }));
  });

  afterAll(async () => {
    recorded.backends.length = 0;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('syncs the backend only after Services, EndpointSlices and the Node are listed, with the server state', async () => {
    // The first Node list fails: the informer retries after its backoff (about a second), and
    // meanwhile the backend must not exist, so nothing could be flushed.
    server.failRequests({ verb: 'list', resource: 'nodes', status: 500, count: 1 });
    healthzPort = await freePort();
    metricsPort = await freePort();
    const kubeconfig = await writeKubeconfig(dir, server.url);
    daemon = runMain([`--kubeconfig=${kubeconfig}`, ...commonFlags(healthzPort, metricsPort)]);

    await waitFor('services and endpointslices listed', () => server.requestsOf('list', 'services').length > 0 && server.requestsOf('list', 'endpointslices').length > 0);
    await waitFor('the first node list to fail', () => server.requestsOf('list', 'nodes').length === 1);
    await new Promise((r) => setTimeout(r, 150));
    expect(recorded.backends).toHaveLength(0);

    await waitFor('the first sync', () => (recorded.backends[0]?.syncs.length ?? 0) >= 1);
    expect(server.requestsOf('list', 'nodes').length).toBeGreaterThanOrEqual(2);
    expect(recorded.backends.map((b) => b.family)).toEqual(['IPv4']);
    backend = recorded.backends[0] as RecordingBackend;

    const first = backend.syncs[0] as { state: ProxyState; changes: ChangeSet };
    expect([...first.state.services.keys()].sort()).toEqual([DB, WEB]);
    expect(first.state.services.get(WEB)).toMatchObject({ clusterIP: '10.96.0.10', port: 80, protocol: 'TCP' });
    expect(hostPorts(first.state, WEB)).toEqual(['10.244.1.11:8080', '10.244.2.12:8080']);
    expect(hostPorts(first.state, DB)).toEqual(['10.244.1.21:5432']);
    expect([...first.changes.servicePorts].sort()).toEqual([DB, WEB]);
    // This server has no ServiceCIDR API (404): the start went on without it.
    expect(first.state.serviceCIDRs).toEqual([]);

    // Only this node (--hostname-override, lower-cased) was watched, with its labels and zone.
    expect(server.requestsOf('list', 'nodes')[0]?.query.fieldSelector).toBe('metadata.name=node1');
    expect(backend.ctx?.node).toMatchObject({ name: 'node1', zone: 'zone-a', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] });
    expect(first.state.node).toMatchObject({ name: 'node1', zone: 'zone-a', eligible: true });
    expect(first.state.node.labels).toMatchObject({ 'example.com/rack': 'r7', 'topology.kubernetes.io/zone': 'zone-a' });

    const healthz = await fetch(`http://127.0.0.1:${healthzPort}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toMatchObject({ nodeEligible: true });
  });

  it('passes on scaled endpoints, a deleted Service and a changed Node as ChangeSets', async () => {
    let from = backend.syncs.length;
    server.apply('endpointslices', endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.11', '10.244.2.12', '10.244.1.13'], ports: [{ name: 'http', port: 8080 }] }));
    let s = await syncWhere(from, 'the scale-up', (x) => x.changes.servicePorts.has(WEB));
    expect([...s.changes.servicePorts]).toEqual([WEB]);
    expect(hostPorts(s.state, WEB)).toEqual(['10.244.1.11:8080', '10.244.1.13:8080', '10.244.2.12:8080']);

    from = backend.syncs.length;
    server.delete('services', 'ns1', 'db');
    s = await syncWhere(from, 'the Service delete', (x) => x.changes.servicePorts.has(DB));
    expect([...s.changes.servicePorts]).toEqual([DB]);
    expect([...s.state.services.keys()]).toEqual([WEB]);

    from = backend.syncs.length;
    server.apply('nodes', node('node1', { addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'], zone: 'zone-c', labels: { 'example.com/rack': 'r8' } }));
    s = await syncWhere(from, 'the Node change', (x) => x.changes.nodeChanged);
    expect(s.state.node).toMatchObject({ zone: 'zone-c', labels: expect.objectContaining({ 'example.com/rack': 'r8' }) });
  });

  it('drops a Service labelled for another proxy, and takes it back when the label goes', async () => {
    const web = (labels?: Record<string, string>) => service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...(labels ? { labels } : {}) });
    let from = backend.syncs.length;
    server.apply('services', web({ [PROXY_NAME_LABEL]: 'other' }));
    let s = await syncWhere(from, 'the Service to leave', (x) => x.changes.servicePorts.has(WEB));
    expect(s.state.services.has(WEB)).toBe(false);

    from = backend.syncs.length;
    server.apply('services', web());
    s = await syncWhere(from, 'the Service to come back', (x) => x.changes.servicePorts.has(WEB));
    expect(s.state.services.has(WEB)).toBe(true);
    expect(hostPorts(s.state, WEB)).toHaveLength(3);
  });

  it('converges after a compaction (410 on re-watch) and after a reset connection', async () => {
    // The watches end cleanly; before they reconnect, the server moves on and forgets history.
    const listsBefore = server.requestsOf('list', 'endpointslices').length;
    expect(server.dropWatches('end')).toBe(3);
    server.apply('endpointslices', endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.11'], ports: [{ name: 'http', port: 8080 }] }));
    server.compact();
    await waitFor('the relist after 410', () => server.requestsOf('list', 'endpointslices').length > listsBefore);
    await waitFor('one endpoint for web', () => hostPorts(lastSync().state, WEB)?.length === 1);
    expect(hostPorts(lastSync().state, WEB)).toEqual(['10.244.1.11:8080']);

    // The connections die; a Service appears meanwhile. The informers restart and relist.
    await waitFor('three watches', () => server.activeWatches() === 3);
    server.dropWatches('reset');
    server.apply('services', service('ns2', 'api', { clusterIP: '10.96.0.30', ports: [{ name: 'https', port: 443, protocol: 'TCP' }] }));
    server.apply('endpointslices', endpointSlice('ns2', 'api', { name: 'api-1', endpoints: ['10.244.3.1'], ports: [{ name: 'https', port: 6443 }] }));
    // Each informer restarts on its own backoff: the Service and its slice may arrive in either order.
    await waitFor('the new Service after the restart', () => lastSync().state.services.has(API) && hostPorts(lastSync().state, API)?.[0] === '10.244.3.1:6443', 6000);
    expect([...lastSync().state.services.keys()].sort()).toEqual([WEB, API]);
    await waitFor('three watches again', () => server.activeWatches() === 3);
    // Each restart is counted, per resource, in the daemon's registry.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const resource of ['services', 'endpointslices', 'nodes']) {
      expect(metrics).toMatch(new RegExp(`^kubeproxy_informer_restarts_total\\{resource="${resource}"\\} [1-9]`, 'm'));
    }
  });

  it('SIGTERM stops watching and serving, leaves the rules, and main() exits 0', async () => {
    expect(await daemon.terminate()).toBe(0);
    expect(daemon.stderr()).toBe('');
    expect(backend.stopped).toBe(1);
    expect(backend.cleaned).toBe(0);
    await waitFor('the watches to close', () => server.activeWatches() === 0, 1000);
    await expect(fetch(`http://127.0.0.1:${healthzPort}/healthz`)).rejects.toThrow();
    // Nothing reconnects after the stop.
    const requests = server.requests.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(server.requests.length).toBe(requests);
  });
});

describe('kube-proxy against an API server with ServiceCIDRs', () => {
  let server: TestApiServer;
  let dir: string;

  beforeAll(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100, served: ['services', 'endpointslices', 'nodes', 'servicecidrs'] });
    dir = await mkdtemp(join(tmpdir(), 'kpts-kubernetes-mode-cidrs-'));
    server.apply('nodes', node('node1', { addresses: ['192.168.50.1'] }));
    server.apply('services', service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }));
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/16', 'fd00:10:96::/112']));
  });
  afterAll(async () => {
    recorded.backends.length = 0;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("hands the family's Service CIDRs to the backend, and a change of them triggers a sync", async () => {
    recorded.backends.length = 0;
    const run = runMain([`--kubeconfig=${await writeKubeconfig(dir, server.url)}`, ...commonFlags(await freePort(), await freePort())]);
    try {
      await waitFor('the backend', () => recorded.backends.length === 1);
      const backend = recorded.backends[0] as RecordingBackend;
      const syncWith = async (from: number, cidrs: string[]) => {
        await waitFor(`a sync with ${cidrs.join(' ')}`, () => backend.syncs.slice(from).some((s) => s.state.serviceCIDRs?.join() === cidrs.join()));
        return backend.syncs.slice(from).find((s) => s.state.serviceCIDRs?.join() === cidrs.join()) as { state: ProxyState; changes: ChangeSet };
      };
      // The IPv4 family keeps the IPv4 range; whether the first sync has it already depends on the
      // informers' order (the start does not wait for ServiceCIDRs), but a sync soon does.
      let s = await syncWith(0, ['10.96.0.0/16']);
      expect(s.changes.serviceCIDRsChanged).toBe(true);
      expect([...s.state.services.keys()]).toEqual([WEB]);

      let from = backend.syncs.length;
      server.apply('servicecidrs', serviceCIDR('extra', ['10.100.0.0/16']));
      s = await syncWith(from, ['10.100.0.0/16', '10.96.0.0/16']);
      expect([s.changes.serviceCIDRsChanged, s.changes.servicePorts.size]).toEqual([true, 0]);

      from = backend.syncs.length;
      server.delete('servicecidrs', undefined, 'extra');
      s = await syncWith(from, ['10.96.0.0/16']);
      expect(s.changes.serviceCIDRsChanged).toBe(true);
    } finally {
      expect(await run.terminate()).toBe(0);
    }
    expect(run.stderr()).toBe('');
  });
});

describe('where the API client configuration comes from (as upstream createClient)', () => {
  let server: TestApiServer;
  let dir: string;

  beforeAll(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    dir = await mkdtemp(join(tmpdir(), 'kpts-kubernetes-mode-client-'));
    server.apply('nodes', node('node1', { addresses: ['192.168.50.1'] }));
    server.apply('services', service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }));
  });
  afterAll(async () => {
    recorded.backends.length = 0;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs main() with `argv` until its first sync, then SIGTERMs it; returns the synced state. */
  async function firstSync(argv: string[]): Promise<ProxyState> {
    recorded.backends.length = 0;
    const run = runMain(argv);
    try {
      await Promise.race([
        waitFor('the first sync', () => (recorded.backends[0]?.syncs.length ?? 0) >= 1),
        run.exit.then((code) => {
          throw new Error(`main() exited with ${code}: ${run.stderr()}`);
        }),
      ]);
    } finally {
      await run.terminate();
    }
    return (recorded.backends[0] as RecordingBackend).syncs[0]?.state as ProxyState;
  }

  it('--master alone talks to that server without credentials', async () => {
    const state = await firstSync([`--master=${server.url}`, ...commonFlags(await freePort(), await freePort())]);
    expect([...state.services.keys()]).toEqual([WEB]);
  });

  it('clientConnection.kubeconfig of the --config file is used; --kubeconfig is then ignored', async () => {
    const kubeconfig = await writeKubeconfig(dir, server.url);
    const configFile = join(dir, 'config.yaml');
    // With --config, the file is the configuration: mode, addresses and sync periods come from it.
    await writeFile(
      configFile,
      [
        'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
        'kind: KubeProxyConfiguration',
        'mode: kpts-recording-backend',
        'clientConnection:',
        `  kubeconfig: ${kubeconfig}`,
        `healthzBindAddress: 127.0.0.1:${await freePort()}`,
        `metricsBindAddress: 127.0.0.1:${await freePort()}`,
        `oomScoreAdj: ${ownOOMScoreAdj}`,
        'iptables:',
        '  minSyncPeriod: 0s',
        '',
      ].join('\n'),
    );
    const opts = resolveOptions([`--config=${configFile}`, '--kubeconfig=/nonexistent/kubeconfig']);
    expect(opts.config.clientConnection.kubeconfig).toBe(kubeconfig);
    expect(opts.config.mode).toBe('kpts-recording-backend');
    expect(opts.warnings).toContain('flag --kubeconfig is ignored because a config file is specified by --config');

    const state = await firstSync([`--config=${configFile}`, '--hostname-override=node1', '--log-level=error']);
    expect([...state.services.keys()]).toEqual([WEB]);
  });

  it('--master overrides the server of the kubeconfig and keeps its credentials', async () => {
    const deadServer = `http://127.0.0.1:${await freePort()}`;
    const kubeconfig = await writeKubeconfig(dir, deadServer);
    expect(loadClusterAccess(kubeconfig, server.url)).toMatchObject({ server: server.url, credentials: 'token' });
    expect(loadClusterAccess(kubeconfig).server).toBe(deadServer);

    const state = await firstSync([`--kubeconfig=${kubeconfig}`, `--master=${server.url}`, ...commonFlags(await freePort(), await freePort())]);
    expect([...state.services.keys()]).toEqual([WEB]);
  });

  it('neither outside a cluster: exit 1 with a clear error, nothing synced', async () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    try {
      recorded.backends.length = 0;
      const run = runMain(commonFlags(await freePort(), await freePort()).map((f) => (f === '--log-level=error' ? '--log-level=silent' : f)));
      expect(await run.exit).toBe(1);
      expect(run.stderr()).toMatch(/^Error: .*not running in a cluster \(KUBERNETES_SERVICE_HOST\/PORT unset\)/);
      expect(recorded.backends).toHaveLength(0);
    } finally {
      if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host;
      if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port;
    }
  });

  it('a kubeconfig that cannot be read: exit 1 naming the file', async () => {
    const run = runMain(['--kubeconfig=/nonexistent/kpts/kubeconfig', ...commonFlags(await freePort(), await freePort()).map((f) => (f === '--log-level=error' ? '--log-level=silent' : f))]);
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toContain('/nonexistent/kpts/kubeconfig');
  });
});
