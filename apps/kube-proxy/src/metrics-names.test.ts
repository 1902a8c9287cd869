// Every series the kubernetes-mixin's kube-proxy dashboard and alerts query, scraped from the
// /metrics of a running daemon (main() against the in-repo API server, a recording backend that
// cleans stale UDP flows the way the kernel backends do). A name missing here is a blank panel or
// an alert that can never fire for an operator who swaps upstream kube-proxy for this one.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendFactory, ChangeSet, CommandRunner, ProxyState, SyncResult } from '@kube-proxy-ts/core';
import { endpointSlice, node, service } from '@kube-proxy-ts/testing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerNFAcctMetrics } from './daemon/nfacct-metrics.js';
import { main } from './main.js';
import { TestApiServer, writeKubeconfig } from '@kube-proxy-ts/testing/apiserver';

// A recording backend that, like the iptables, nftables and IPVS backends, deletes the stale UDP
// flows of each sync with `conntrack -D` through the runner it was given.
const recorded = await vi.hoisted(async () => {
  const { RecordingBackend } = await import('@kube-proxy-ts/testing');
  const { deleteConntrackFlows, planStaleUDPFlows } = await import('@kube-proxy-ts/netfilter');
  class ConntrackCleaningBackend extends RecordingBackend {
    /** Syncs that had stale flows to delete. */
    cleanups = 0;
    override async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
      const result = await super.sync(state, changes);
      const stale = planStaleUDPFlows(state, changes);
      if (this.ctx && stale.length > 0) {
        this.cleanups++;
        await deleteConntrackFlows(this.ctx.runner, this.family, stale);
      }
      return result;
    }
  }
  const backends: ConntrackCleaningBackend[] = [];
  const factory: BackendFactory = ({ ipFamily }) => {
    const b = new ConntrackCleaningBackend(ipFamily);
    backends.push(b);
    return b;
  };
  return { factory, backends };
});
vi.mock('kpts-conntrack-cleaning-backend', () => ({ default: recorded.factory }));
// Nothing here runs on this machine: `conntrack -D` answers as conntrack 1.4 does after deleting
// 3 entries; any other command is refused.
const conntrackCalls: string[][] = [];
vi.mock('@kube-proxy-ts/netfilter', async (importOriginal) => ({
  ...(await importOriginal<typeof import('@kube-proxy-ts/netfilter')>()),
  createExecRunner: (): CommandRunner => ({
    run: async (cmd: string, args: readonly string[]) => {
      if (cmd !== 'conntrack') throw new Error(`refusing to run ${cmd} on the host from this test`);
      conntrackCalls.push([...args]);
      return { code: 0, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n' };
    },
  }),
}));

/**
 * What the mixin queries (dashboards/proxy.libsonnet "Proxy" dashboard, alerts/kube_proxy.libsonnet,
 * alerts/system_alerts.libsonnet), with the labels the queries select or group by.
 */
const MIXIN: ReadonlyArray<{ series: string; type: string; labels: readonly string[]; where: string }> = [
  { series: 'kubeproxy_sync_proxy_rules_duration_seconds_count', type: 'histogram', labels: [], where: 'dashboard "Rules Sync Rate"' },
  { series: 'kubeproxy_sync_proxy_rules_duration_seconds_bucket', type: 'histogram', labels: ['le'], where: 'dashboard "Rule Sync Latency 99th Quantile"' },
  { series: 'kubeproxy_network_programming_duration_seconds_count', type: 'histogram', labels: [], where: 'dashboard "Network Programming Rate"' },
  { series: 'kubeproxy_network_programming_duration_seconds_bucket', type: 'histogram', labels: ['le'], where: 'dashboard "Network Programming Latency 99th Quantile" and its $instance variable' },
  { series: 'rest_client_requests_total', type: 'counter', labels: ['code', 'method', 'host'], where: 'dashboard "Kube API Request Rate" (code=~"2.."...), alert KubeClientErrors' },
  // The panels group by (verb, url, le); upstream has labelled it {verb, host} since v1.29, so
  // `url` is empty there as here, and each verb is one line.
  { series: 'rest_client_request_duration_seconds_bucket', type: 'histogram', labels: ['verb', 'host', 'le'], where: 'dashboard "Get Request Latency 99th Quantile" (verb="GET")' },
  { series: 'process_resident_memory_bytes', type: 'gauge', labels: [], where: 'dashboard "Memory"' },
  { series: 'process_cpu_seconds_total', type: 'counter', labels: [], where: 'dashboard "CPU usage"' },
  { series: 'kubernetes_build_info', type: 'gauge', labels: ['git_version'], where: 'alert KubeVersionMismatch (count by git_version, v<major>.<minor>)' },
];

/**
 * Queried by the mixin, but not this program's to export:
 *  - up: made by Prometheus for each scrape (alert KubeProxyDown, dashboard "Up").
 *  - go_goroutines: the Go runtime's ("Goroutines" panel); a Node.js process has no goroutines.
 *  - rest_client_request_duration_seconds_bucket{verb="POST"} ("Post Request Latency"): upstream's
 *    POSTs are Events, which this proxy does not record, so that panel is empty here.
 */
const NOT_OURS = ['up', 'go_goroutines'];

/** kube-proxy series the mixin does not query but whose presence depends on the node. */
const NFACCT_SERIES = ['kubeproxy_iptables_ct_state_invalid_dropped_packets_total', 'kubeproxy_iptables_localhost_nodeports_accepted_packets_total'];

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The samples of `series` in Prometheus text, each as its label map and value. */
function samples(text: string, series: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== series) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** The # TYPE of the metric family `series` belongs to. */
function typeOf(text: string, series: string): string | undefined {
  const family = series.replace(/_(bucket|count|sum)$/, '');
  return new RegExp(`^# TYPE (?:${series}|${family}) (\\w+)$`, 'm').exec(text)?.[1];
}

describe('the series the kubernetes-mixin queries, scraped from a running daemon', () => {
  let server: TestApiServer;
  let dir: string;
  let metricsPort: number;
  let terminate: () => void;
  let exit: Promise<number>;
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();

  beforeAll(async () => {
    server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    dir = await mkdtemp(join(tmpdir(), 'kpts-metrics-names-'));
    server.apply('nodes', node('node1', { addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] }));
    server.apply('services', service('kube-system', 'dns', { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }));
    server.apply('endpointslices', endpointSlice('kube-system', 'dns', { name: 'dns-1', endpoints: ['10.244.1.11', '10.244.1.12'], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }));
    metricsPort = await freePort();
    const signals = new Map<string, () => void>();
    exit = main(
      [
        `--kubeconfig=${await writeKubeconfig(dir, server.url)}`,
        '--hostname-override=node1',
        '--proxy-mode=kpts-conntrack-cleaning-backend',
        `--healthz-bind-address=127.0.0.1:${await freePort()}`,
        `--metrics-bind-address=127.0.0.1:${metricsPort}`,
        '--iptables-min-sync-period=0s',
        `--oom-score-adj=${(await import('node:fs')).readFileSync('/proc/self/oom_score_adj', 'utf8').trim()}`,
        '--log-level=error',
      ],
      { stdout: () => undefined, stderr: () => undefined, onSignal: (s, fn) => signals.set(s, fn) },
    );
    terminate = () => signals.get('SIGTERM')?.();
    await waitFor('the first sync', () => (recorded.backends[0]?.syncs.length ?? 0) >= 1);
    // An endpoint goes (its UDP flows are stale, so the cleanup runs) and the change carries a
    // trigger time (so network programming latency is observed), as from the EndpointSlice
    // controller. Trigger times from before the proxy started are ignored, as upstream does.
    server.apply(
      'endpointslices',
      endpointSlice('kube-system', 'dns', { name: 'dns-1', endpoints: ['10.244.1.11'], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }], lastChangeTriggerTime: new Date() }),
    );
    await waitFor('the sync of the endpoint change', () => (recorded.backends[0]?.syncs.at(-1)?.state.endpoints.get('kube-system/dns:dns/UDP')?.length ?? 0) === 1);
    await waitFor('the cleanup to be recorded', async () => samples(await scrape(), 'kubeproxy_conntrack_reconciler_sync_duration_seconds_count')[0]?.value === 2);
  });

  afterAll(async () => {
    terminate?.();
    await exit;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it.each(MIXIN)('$series ($where)', async ({ series, type, labels }) => {
    const text = await scrape();
    expect(typeOf(text, series), `# TYPE of ${series}`).toBe(type);
    const found = samples(text, series);
    expect(found.length, `samples of ${series}`).toBeGreaterThan(0);
    for (const label of labels) expect(found.some((s) => label in s.labels), `${series} has label ${label}`).toBe(true);
  });

  it('counts the API calls of the informers as client-go would: GET lists and watches, 2xx, per API server host', async () => {
    const text = await scrape();
    const host = new URL(server.url).host;
    const ok = samples(text, 'rest_client_requests_total').filter((s) => s.labels.code === '200' && s.labels.method === 'GET' && s.labels.host === host);
    // At least one list and one watch for each of Services, EndpointSlices and the Node.
    expect(ok[0]?.value ?? 0).toBeGreaterThanOrEqual(6);
    // This server has no ServiceCIDR API: those lists are counted as the 404s they are.
    expect(samples(text, 'rest_client_requests_total').some((s) => s.labels.code === '404')).toBe(true);
    expect(samples(text, 'rest_client_request_duration_seconds_count').find((s) => s.labels.verb === 'GET')?.value ?? 0).toBeGreaterThanOrEqual(3);
  });

  it('exports kubernetes_build_info = 1 with upstream labels and the Kubernetes version this proxy follows', async () => {
    const [info, ...more] = samples(await scrape(), 'kubernetes_build_info');
    expect(more).toEqual([]);
    expect(info?.value).toBe(1);
    expect(Object.keys(info?.labels ?? {}).sort()).toEqual(['build_date', 'compiler', 'git_commit', 'git_tree_state', 'git_version', 'go_version', 'major', 'minor', 'platform'].sort());
    expect(info?.labels).toMatchObject({ major: '1', minor: '34', git_version: 'v1.34.0', go_version: '', platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}` });
    // KubeVersionMismatch compares label_replace(git_version, "(v[0-9]*.[0-9]*).*"): a 1.34 cluster is one version.
    expect(/^(v[0-9]*.[0-9]*).*$/.exec(info?.labels.git_version ?? '')?.[1]).toBe('v1.34');
  });

  it('records the stale-UDP cleanup as the conntrack reconciler: one reconcile per sync that ran one, per family', async () => {
    const text = await scrape();
    expect(conntrackCalls.length).toBeGreaterThan(0);
    expect(conntrackCalls.every((a) => a[0] === '-D' && a.includes('ipv4'))).toBe(true);
    expect(typeOf(text, 'kubeproxy_conntrack_reconciler_sync_duration_seconds_count')).toBe('histogram');
    // The first sync (the service got endpoints) and the endpoint removal each cleaned up.
    expect(recorded.backends[0]?.cleanups).toBe(2);
    expect(samples(text, 'kubeproxy_conntrack_reconciler_sync_duration_seconds_count')).toEqual([{ labels: { ip_family: 'IPv4' }, value: 2 }]);
    // Each `conntrack -D` of that sync said it deleted 3 entries.
    expect(samples(text, 'kubeproxy_conntrack_reconciler_deleted_entries_total')).toEqual([{ labels: { ip_family: 'IPv4' }, value: 3 * conntrackCalls.length }]);
  });

  it('leaves out what is not this program to export, and the nfacct counters outside iptables mode', async () => {
    const text = await scrape();
    for (const name of [...NOT_OURS, ...NFACCT_SERIES]) expect(samples(text, name), name).toEqual([]);
  });
});

describe('the nfacct packet counters (iptables mode)', () => {
  /** An `nfacct` tool over a table of objects, or one that fails as on a kernel without nfnetlink_acct. */
  function nfacct(objects: Map<string, number> | 'unsupported'): CommandRunner {
    return {
      run: async (cmd, args) => {
        if (cmd !== 'nfacct') throw new Error(`unexpected ${cmd}`);
        if (objects === 'unsupported') return { code: 1, stdout: '', stderr: 'nfacct v1.0.2: error: Protocol not supported\n' };
        const line = (name: string) => `{ pkts = ${String(objects.get(name)).padStart(20, '0')}, bytes = 00000000000000000000 } = ${name};\n`;
        const [verb, name = ''] = args;
        if (verb === 'list') return { code: 0, stdout: [...objects.keys()].map(line).join(''), stderr: '' };
        if (verb === 'add') return objects.set(name, 0) && { code: 0, stdout: '', stderr: '' };
        if (verb === 'get' && objects.has(name)) return { code: 0, stdout: line(name), stderr: '' };
        return { code: 1, stdout: '', stderr: 'nfacct v1.0.2: error: No such file or directory\n' };
      },
    };
  }
  const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined };

  it('exports both counters with the packet counts of their nfacct objects where the node has nfacct', async () => {
    const objects = new Map([['ct_state_invalid_dropped_pkts', 17]]);
    const registry = new Registry();
    expect(await registerNFAcctMetrics(registry, nfacct(objects), logger)).toEqual(NFACCT_SERIES);
    // The missing object was created, as upstream's Ensure does.
    expect(objects.has('localhost_nps_accepted_pkts')).toBe(true);
    objects.set('localhost_nps_accepted_pkts', 5);
    let text = await registry.metrics();
    expect(typeOf(text, NFACCT_SERIES[0]!)).toBe('counter');
    expect(samples(text, NFACCT_SERIES[0]!)).toEqual([{ labels: {}, value: 17 }]);
    expect(samples(text, NFACCT_SERIES[1]!)).toEqual([{ labels: {}, value: 5 }]);
    // An object that cannot be read at scrape time is left out, not reported as 0.
    objects.delete('ct_state_invalid_dropped_pkts');
    text = await registry.metrics();
    expect(samples(text, NFACCT_SERIES[0]!)).toEqual([]);
    expect(samples(text, NFACCT_SERIES[1]!)).toEqual([{ labels: {}, value: 5 }]);
  });

  it('exports neither where the kernel has no nfacct accounting (absent, not zero)', async () => {
    const registry = new Registry();
    expect(await registerNFAcctMetrics(registry, nfacct('unsupported'), logger)).toEqual([]);
    const text = await registry.metrics();
    for (const name of NFACCT_SERIES) expect(text).not.toContain(name);
  });
});
