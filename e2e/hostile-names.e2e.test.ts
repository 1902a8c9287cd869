// Names on a real kernel: the longest names the API server allows (63-character namespace and
// Service name, 15-character port name) are served by every backend, though they make comments
// longer than nft takes (128) and near what iptables takes (255); and objects whose names would
// break a payload (a newline that starts a rule of its own, a quote that ends an nft string) are
// refused without taking the good objects beside them down. iptables and nftables run in this
// process fed by core's tracker; the userspace backend runs as the built daemon with --manifests,
// the path that accepts such names from a file. (IPVS: see backend-ipvs longest-names.test.ts.)

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { nodeToNodeInfo, realClock, type Backend, type BackendContext } from '@kube-proxy-ts/core';
import { IptablesBackend } from '@kube-proxy-ts/backend-iptables';
import { NftablesBackend } from '@kube-proxy-ts/backend-nftables';
import {
  ClusterFeed,
  createSandbox,
  endpointSlice,
  node,
  proxyConfig,
  removeLeftoverSandboxes,
  sandboxUnsupportedReason,
  service,
  testContext,
  type Sandbox,
} from '@kube-proxy-ts/testing';
import { answers, expectRefusedAtOnce } from './traffic.js';

const NODE = 'node1';
const NS = `hostile-names-${'n'.repeat(49)}`;
const NAME = `longest-${'s'.repeat(55)}`;
const EMPTY_NAME = `${NAME.slice(0, 62)}e`;
const PORT = 'longest-port-nm';
const HOSTILE_NAMES = ['web\n-A KUBE-SERVICES -j DROP\n#', 'web" ; flush ruleset ; add table ip x { comment "'];

const VIP = { longest: '10.96.0.20', empty: '10.96.0.21', good: '10.96.0.22', hostile: ['10.96.0.23', '10.96.0.24'], badPort: '10.96.0.25' };
const NODE_PORT = 30090;
const targetPort = 8080;

/**
 * The cluster of every case: the longest names with and without endpoints, a good Service, and
 * beside it hostile Services, a hostile port name and a hostile slice of the good Service (whose
 * endpoint, pod3, must not be used).
 */
function objects(sb: Sandbox): { services: V1Service[]; slices: V1EndpointSlice[] } {
  const pod = (i: number) => ({ ip: sb.pods[i - 1]!.ip, nodeName: NODE });
  const http = [{ name: 'http', port: targetPort }];
  return {
    services: [
      service(NS, NAME, { type: 'NodePort', clusterIP: VIP.longest, ports: [{ name: PORT, port: 80, targetPort, nodePort: NODE_PORT }] }),
      service(NS, EMPTY_NAME, { clusterIP: VIP.empty, ports: [{ name: PORT, port: 80, targetPort }] }),
      service('default', 'web', { clusterIP: VIP.good, ports: [{ name: 'http', port: 80, targetPort }] }),
      ...HOSTILE_NAMES.map((name, i) => service('default', name, { clusterIP: VIP.hostile[i]!, ports: [{ name: 'http', port: 80, targetPort }] })),
      service('default', 'bad-port', { clusterIP: VIP.badPort, ports: [{ name: HOSTILE_NAMES[1]!, port: 80, targetPort }] }),
    ],
    slices: [
      endpointSlice(NS, NAME, { name: `${NAME}-abcde`, endpoints: [pod(1), pod(2)], ports: [{ name: PORT, port: targetPort }] }),
      endpointSlice('default', 'web', { name: 'web-1', endpoints: [pod(1), pod(2)], ports: http }),
      endpointSlice('default', 'web', { name: HOSTILE_NAMES[0], endpoints: [pod(3)], ports: http }),
      ...HOSTILE_NAMES.map((name, i) => endpointSlice('default', name, { name: `hostile-${i}`, endpoints: [pod(3)], ports: http })),
      endpointSlice('default', 'bad-port', { name: 'bad-port-1', endpoints: [pod(3)], ports: [{ name: HOSTILE_NAMES[1]!, port: targetPort }] }),
    ],
  };
}

/** What every backend must do with objects(): checked by traffic only. */
function trafficCases(get: () => Sandbox) {
  it('serves the longest valid names through the ClusterIP and the NodePort', async () => {
    const sb = get();
    expect(await answers(sb, 'client', VIP.longest, 80, 16, ['pod1', 'pod2'])).toEqual(new Set(['pod1', 'pod2']));
    expect(await answers(sb, 'external', sb.node.ip, NODE_PORT, 12, ['pod1', 'pod2'])).toEqual(new Set(['pod1', 'pod2']));
  });

  it('refuses at once a Service with the longest names and no endpoints', async () => {
    await expectRefusedAtOnce(get(), 'client', VIP.empty, 80);
  });

  it('serves the good Service beside the hostile objects, without the endpoint of the hostile slice', async () => {
    expect(await answers(get(), 'client', VIP.good, 80, 16, ['pod1', 'pod2'])).toEqual(new Set(['pod1', 'pod2']));
  });
}

const NODE_OBJECT = (sb: Sandbox) => node(NODE, { addresses: [sb.plan.nodeIP], podCIDRs: [sb.plan.podCIDR] });

/** A kernel backend in the sandbox's node namespace, fed through core's tracker as the daemon feeds it. */
function kernelBackendSuite(tag: string, make: (sb: Sandbox) => Backend, checkRules: (sb: Sandbox) => Promise<void>) {
  let sb: Sandbox;
  let backend: Backend | undefined;
  let ctx: BackendContext;

  beforeAll(async () => {
    await removeLeftoverSandboxes(tag);
    sb = await createSandbox({ tag, pods: 3, ports: [targetPort] });
    backend = make(sb);
    ctx = testContext({ runner: sb.runner('node'), clock: realClock, node: nodeToNodeInfo(NODE_OBJECT(sb), 'IPv4') });
    await backend.start(ctx);
    const feed = new ClusterFeed({ ipFamily: 'IPv4', node: NODE_OBJECT(sb) });
    feed.tracker.onServiceCIDRsChanged([sb.plan.serviceCIDR]);
    const { services, slices } = objects(sb);
    feed.upsert(...services, ...slices);
    const { state, changes } = feed.checkpoint();
    expect([...state.services.keys()].sort()).toEqual(['default/web:http/TCP', `${NS}/${EMPTY_NAME}:${PORT}/TCP`, `${NS}/${NAME}:${PORT}/TCP`]);
    const result = await backend.sync(state, changes);
    expect(result.ok, result.error?.message).toBe(true);
  }, 120_000);

  afterAll(async () => {
    await backend?.cleanup(ctx).catch(() => undefined);
    await sb?.destroy();
  });

  trafficCases(() => sb);
  it('writes no rule of a hostile name, and comments within the tool\'s limit', () => checkRules(sb));
}

const IPTABLES_TOOLS = ['iptables-nft', 'iptables-nft-restore', 'iptables-nft-save', 'conntrack', 'curl'];
const iptablesUnsupported = sandboxUnsupportedReason(IPTABLES_TOOLS);
if (iptablesUnsupported) console.log(`hostile-names iptables e2e skipped: ${iptablesUnsupported}`);

describe.skipIf(iptablesUnsupported !== undefined)('hostile and longest names: iptables backend', () => {
  kernelBackendSuite(
    'hnipt',
    (sb) => new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: sb.plan.clusterCIDR }), commandTimeoutMs: 60_000 }),
    async (sb) => {
      const save = await sb.execOk('node', ['iptables-nft-save']);
      expect(save).not.toMatch(/^-A KUBE-SERVICES -j DROP$/m);
      expect(save).not.toContain('flush ruleset');
      expect(save).toContain(`--comment "${NS}/${EMPTY_NAME}:${PORT} has no endpoints"`);
    },
  );
});

const nftUnsupported = sandboxUnsupportedReason(['nft', 'conntrack', 'curl']);
if (nftUnsupported) console.log(`hostile-names nftables e2e skipped: ${nftUnsupported}`);

describe.skipIf(nftUnsupported !== undefined)('hostile and longest names: nftables backend', () => {
  kernelBackendSuite(
    'hnnft',
    (sb) => new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: sb.plan.clusterCIDR }), nftTimeoutMs: 30_000 }),
    async (sb) => {
      const ruleset = await sb.execOk('node', ['nft', 'list', 'ruleset']);
      expect(ruleset).not.toMatch(/table ip x\b/);
      // The 143-character ServicePortName, cut to nft's 128 on the no-endpoint element.
      const full = `${NS}/${EMPTY_NAME}:${PORT}`;
      expect(full).toHaveLength(143);
      expect(ruleset).toContain(`comment "${full.slice(0, 128)}"`);
      expect(ruleset).not.toContain(full);
    },
  );
});

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));

function daemonUnsupported(): string | undefined {
  const reason = sandboxUnsupportedReason(['iptables-restore', 'curl']);
  if (reason) return reason;
  if (!existsSync(CLI)) return `the daemon is not built (${CLI} is missing: run pnpm build)`;
  return undefined;
}
const userspaceUnsupported = daemonUnsupported();
if (userspaceUnsupported) console.log(`hostile-names userspace e2e skipped: ${userspaceUnsupported}`);

describe.skipIf(userspaceUnsupported !== undefined)('hostile and longest names: userspace backend (daemon, --manifests)', () => {
  let sb: Sandbox;
  let dir: string;
  let daemon: ChildProcess | undefined;
  let log = '';

  beforeAll(async () => {
    await removeLeftoverSandboxes('hnusp');
    sb = await createSandbox({ tag: 'hnusp', pods: 3, ports: [targetPort] });
    dir = mkdtempSync(join(tmpdir(), 'kpts-hn-'));
    const file = join(dir, 'objects.yaml');
    const { services, slices } = objects(sb);
    const nodeObject = { apiVersion: 'v1', kind: 'Node', ...NODE_OBJECT(sb) };
    const docs = [nodeObject, ...services.map((s) => ({ apiVersion: 'v1', kind: 'Service', ...s })), ...slices.map((s) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', ...s }))];
    writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
    daemon = spawn(
      'ip',
      ['netns', 'exec', sb.netns('node'), process.execPath, CLI, `--manifests=${file}`, '--proxy-mode=userspace', `--hostname-override=${NODE}`,
        `--cluster-cidr=${sb.plan.clusterCIDR}`, '--healthz-bind-address=127.0.0.1:10256', '--metrics-bind-address=127.0.0.1:10249', '--v=2'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    daemon.stdout?.on('data', (b: Buffer) => (log += b.toString()));
    daemon.stderr?.on('data', (b: Buffer) => (log += b.toString()));
    const end = Date.now() + 30_000;
    while (!(await sb.tryHttp('client', VIP.good, 80, { timeoutMs: 1000 })).ok) {
      if (Date.now() > end || daemon.exitCode !== null) throw new Error(`the daemon did not serve the good Service; log tail:\n${log.split('\n').slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 60_000);

  afterAll(async () => {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await Promise.race([new Promise((r) => daemon?.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
    // The userspace backend leaves its rules on SIGTERM; they live in the sandbox, which goes now.
    await sb?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  trafficCases(() => sb);

  it('warns once per refused object (not once per IP family), naming what is invalid', () => {
    const warned = (msg: string) => log.split('\n').filter((l) => l.includes(msg));
    // Two hostile Services and the one with a hostile port name; their three slices and the hostile slice of "web".
    expect(warned('Ignoring invalid Service')).toHaveLength(3);
    expect(warned('Ignoring invalid EndpointSlice')).toHaveLength(4);
    expect(log).not.toMatch(/Failed to sync/);
  });
});
