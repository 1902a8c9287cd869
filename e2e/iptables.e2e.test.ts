// The iptables backend on a real kernel, inside a sandbox of network namespaces: a node running
// the backend, pods answering with their own name, an in-cluster client and an external client.

import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IptablesBackend } from '@kube-proxy-ts/backend-iptables';
import {
  ClusterFeed,
  createSandbox,
  endpointSlice,
  listSandboxNamespaces,
  node,
  proxyConfig,
  sandboxUnsupportedReason,
  service,
  testContext,
  type Sandbox,
} from '@kube-proxy-ts/testing';

const TOOLS = ['iptables-nft', 'iptables-nft-restore', 'iptables-nft-save', 'conntrack', 'curl'];
const unsupported = sandboxUnsupportedReason(TOOLS);
if (unsupported) console.log(`iptables e2e skipped: ${unsupported}`);

const NODE = 'e2e-node';
const TAG = 'ipte2e';
describe.skipIf(unsupported !== undefined)('iptables backend on a real kernel', () => {
  let sb: Sandbox;
  let backend: IptablesBackend;
  let feed: ClusterFeed;
  let ctx: ReturnType<typeof testContext>;

  const VIP = '10.96.0.10';
  const NO_EP_VIP = '10.96.0.11';
  const AFFINITY_VIP = '10.96.0.12';
  const UDP_VIP = '10.96.0.13';
  const LB_IP = '192.168.60.10';
  const EXTERNAL_IP = '192.168.60.20';
  const targetPort = 8080;

  async function sync(): Promise<void> {
    const { state, changes } = feed.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result.ok, result.error?.message).toBe(true);
  }

  /** The pods answering `times` requests (new connections each). */
  async function httpNames(from: string, host: string, port: number, times: number): Promise<Set<string>> {
    const names = new Set<string>();
    for (let i = 0; i < times; i++) names.add(await sb.http(from, host, port, { timeoutMs: 3000 }));
    return names;
  }

  const save = async () => sb.execOk('node', ['iptables-nft-save']);

  beforeAll(async () => {
    // Leftovers of an interrupted run of this suite only.
    for (const ns of await listSandboxNamespaces(`kpts-${TAG}-`)) {
      execFileSync('ip', ['netns', 'del', ns], { timeout: 15_000, stdio: 'ignore' });
    }
    sb = await createSandbox({ tag: TAG, pods: 2, ports: [targetPort] });
    // Another program's rules, which neither sync nor cleanup may touch.
    await sb.execOk('node', ['iptables-nft', '-w', '-t', 'nat', '-A', 'PREROUTING', '-s', '198.51.100.0/24', '-m', 'comment', '--comment', 'foreign rule', '-j', 'RETURN']);
    await sb.execOk('node', ['iptables-nft', '-w', '-N', 'FOREIGN-CHAIN']);
    await sb.execOk('node', ['iptables-nft', '-w', '-A', 'FOREIGN-CHAIN', '-s', '198.51.100.1', '-j', 'DROP']);

    ctx = testContext({ runner: sb.runner('node') as never, node: { name: NODE, addresses: [sb.plan.nodeIP], podCIDRs: [sb.plan.podCIDR] } });
    const config = proxyConfig({ clusterCIDR: sb.plan.clusterCIDR });
    backend = new IptablesBackend({ ipFamily: 'IPv4', config, commandTimeoutMs: 60_000 });
    await backend.start(ctx);
    feed = new ClusterFeed({ node: node(NODE, { addresses: [sb.plan.nodeIP], podCIDRs: [sb.plan.podCIDR] }) });
  }, 120_000);

  afterAll(async () => {
    await backend?.cleanup().catch(() => undefined);
    await sb?.destroy();
  });

  const [pod1, pod2] = [0, 1].map((i) => ({ name: `pod${i + 1}`, ip: `10.244.1.${11 + i}` })) as [{ name: string; ip: string }, { name: string; ip: string }];
  const ports = [
    { name: 'http', port: 80, targetPort, protocol: 'TCP' as const, nodePort: 30080 },
    { name: 'dns', port: 53, targetPort, protocol: 'UDP' as const, nodePort: 30053 },
  ];
  const slicePorts = [
    { name: 'http', port: targetPort, protocol: 'TCP' as const },
    { name: 'dns', port: targetPort, protocol: 'UDP' as const },
  ];

  it('ClusterIP over TCP and UDP reaches every endpoint; NodePort from an external client', async () => {
    feed.upsert(
      service('default', 'web', { type: 'NodePort', clusterIP: VIP, ports }),
      endpointSlice('default', 'web', { name: 'web-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }, { ip: pod2.ip, nodeName: NODE }], ports: slicePorts }),
    );
    await sync();
    expect(await httpNames('client', VIP, 80, 16)).toEqual(new Set([pod1.name, pod2.name]));
    const udp = new Set<string>();
    for (let i = 0; i < 24 && udp.size < 2; i++) udp.add(await sb.udp('client', VIP, 53, { timeoutMs: 3000 }));
    expect(udp).toEqual(new Set([pod1.name, pod2.name]));
    expect(await httpNames('external', sb.plan.nodeIP, 30080, 16)).toEqual(new Set([pod1.name, pod2.name]));
  });

  it('refuses connections to a service without endpoints at once', async () => {
    feed.upsert(service('default', 'empty', { clusterIP: NO_EP_VIP, ports: [{ name: 'http', port: 80, targetPort }] }));
    await sync();
    const started = Date.now();
    const r = await sb.tryHttp('client', NO_EP_VIP, 80, { timeoutMs: 3000 });
    expect(r.ok).toBe(false);
    expect(r.error ?? '').toMatch(/refused|Couldn't connect|Failed to connect/i);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('stops sending new connections to a removed endpoint after the next sync (partial sync)', async () => {
    feed.upsert(endpointSlice('default', 'web', { name: 'web-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }], ports: slicePorts }));
    const { state, changes } = feed.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result).toMatchObject({ ok: true, full: false });
    expect(await httpNames('client', VIP, 80, 12)).toEqual(new Set([pod1.name]));
  });

  it('keeps a client on one endpoint with ClientIP affinity', async () => {
    feed.upsert(
      service('default', 'sticky', { clusterIP: AFFINITY_VIP, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ name: 'http', port: 80, targetPort }] }),
      endpointSlice('default', 'sticky', { name: 'sticky-a', endpoints: [pod1.ip, pod2.ip], ports: [{ name: 'http', port: targetPort }] }),
    );
    await sync();
    expect((await httpNames('client', AFFINITY_VIP, 80, 12)).size).toBe(1);
  });

  it('externalTrafficPolicy Local: NodePort traffic goes only to local endpoints and keeps the client address', async () => {
    feed.upsert(
      service('default', 'local', { type: 'NodePort', clusterIP: '10.96.0.14', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort, nodePort: 30081 }] }),
      endpointSlice('default', 'local', { name: 'local-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }, { ip: pod2.ip, nodeName: 'other-node' }], ports: [{ name: 'http', port: targetPort }] }),
    );
    await sync();
    expect(await httpNames('external', sb.plan.nodeIP, 30081, 12)).toEqual(new Set([pod1.name]));
    expect(await sb.http('external', sb.plan.nodeIP, 30081, { path: '/clientip' })).toBe(sb.plan.externalIP);
    // In-cluster traffic to the ClusterIP still uses every endpoint.
    expect(await httpNames('client', '10.96.0.14', 80, 24)).toEqual(new Set([pod1.name, pod2.name]));
  });

  it('LB IP with a source range admits one client and refuses another; externalIP reaches the endpoints', async () => {
    feed.upsert(
      service('default', 'lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.15',
        externalIPs: [EXTERNAL_IP],
        loadBalancerIngress: [LB_IP],
        loadBalancerSourceRanges: [`${sb.plan.externalIP}/32`],
        ports: [{ name: 'http', port: 80, targetPort, nodePort: 30082 }],
      }),
      endpointSlice('default', 'lb', { name: 'lb-a', endpoints: [{ ip: pod2.ip, nodeName: NODE }], ports: [{ name: 'http', port: targetPort }] }),
    );
    await sync();
    expect(await sb.http('external', LB_IP, 80)).toBe(pod2.name);
    const refused = await sb.tryHttp('client', LB_IP, 80, { timeoutMs: 1500 });
    expect(refused.ok).toBe(false);
    expect(await sb.http('external', EXTERNAL_IP, 80)).toBe(pod2.name);
  });

  it('deletes the UDP conntrack entry of a removed endpoint', async () => {
    feed.upsert(
      service('default', 'dns', { clusterIP: UDP_VIP, ports: [{ name: 'dns', port: 53, targetPort, protocol: 'UDP' }] }),
      endpointSlice('default', 'dns', { name: 'dns-a', endpoints: [pod1.ip, pod2.ip], ports: [{ name: 'dns', port: targetPort, protocol: 'UDP' }] }),
    );
    await sync();
    const seen = new Set<string>();
    for (let i = 0; i < 24 && seen.size < 2; i++) seen.add(await sb.udp('client', UDP_VIP, 53));
    expect(seen).toEqual(new Set([pod1.name, pod2.name]));
    const entries = async () => (await sb.exec('node', ['conntrack', '-L', '-p', 'udp', '--orig-dst', UDP_VIP, '--reply-src', pod2.ip])).stdout;
    expect(await entries()).toContain(pod2.ip);
    feed.upsert(endpointSlice('default', 'dns', { name: 'dns-a', endpoints: [pod1.ip], ports: [{ name: 'dns', port: targetPort, protocol: 'UDP' }] }));
    await sync();
    expect(await entries()).not.toContain(pod2.ip);
  });

  it('keeps foreign rules through syncs and cleanup, and cleanup leaves no KUBE-* chain', async () => {
    const before = await save();
    expect(before).toContain('foreign rule');
    expect(before).toMatch(/:KUBE-SERVICES/);
    await backend.cleanup();
    const after = await save();
    expect(after).not.toMatch(/KUBE-/);
    expect(after).toContain('-A PREROUTING -s 198.51.100.0/24 -m comment --comment "foreign rule" -j RETURN');
    expect(after).toContain('-A FOREIGN-CHAIN -s 198.51.100.1/32 -j DROP');
    // A second cleanup finds nothing and does not fail.
    await backend.cleanup();
  });
});
