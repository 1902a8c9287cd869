// The iptables backend on a real kernel, inside a sandbox of network namespaces: a node running
// the backend, pods answering with their own name, an in-cluster client and an external client.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { V1Node } from '@kubernetes/client-node';
import { nodeToNodeInfo, type IPFamily } from '@kube-proxy-ts/core';
import { IptablesBackend } from '@kube-proxy-ts/backend-iptables';
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
import { expectOneAnswer, expectReaches, expectRefusedAtOnce, explainedReach } from './traffic.js';
import { POD_NAMES, VIP4, ipv6TrafficTests, startDualStack, type DualStack } from './dual-stack.js';

const TOOLS = ['iptables-nft', 'iptables-nft-restore', 'iptables-nft-save', 'conntrack', 'curl'];
const unsupported = sandboxUnsupportedReason(TOOLS);
if (unsupported) console.log(`iptables e2e skipped: ${unsupported}`);
const unsupported6 = unsupported ?? sandboxUnsupportedReason(['ip6tables-nft', 'ip6tables-nft-restore', 'ip6tables-nft-save']);
if (unsupported6 && !unsupported) console.log(`iptables IPv6 e2e skipped: ${unsupported6}`);

const NODE = 'e2e-node';
const targetPort = 8080;

type Instance = Awaited<ReturnType<typeof startInstance>>;

/** The backend instance of one family in the node namespace, fed as the daemon feeds it. */
async function startInstance(sb: Sandbox, ipFamily: IPFamily, nodeObject: V1Node, clusterCIDR: string) {
  const backend = new IptablesBackend({ ipFamily, config: proxyConfig({ clusterCIDR }), commandTimeoutMs: 60_000 });
  const ctx = testContext({ runner: sb.runner('node') as never, node: nodeToNodeInfo(nodeObject, ipFamily) });
  await backend.start(ctx);
  const feed = new ClusterFeed({ ipFamily, node: nodeObject });
  const sync = async () => {
    const { state, changes } = feed.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result.ok, result.error?.message).toBe(true);
    return result;
  };
  return { backend, ctx, node: ctx.node, feed, sync };
}

describe.skipIf(unsupported !== undefined)('iptables backend on a real kernel', () => {
  const TAG = 'ipte2e';
  let sb: Sandbox;
  let ipv4: Instance;
  const sync = () => ipv4.sync();

  const VIP = '10.96.0.10';
  const NO_EP_VIP = '10.96.0.11';
  const AFFINITY_VIP = '10.96.0.12';
  const UDP_VIP = '10.96.0.13';
  const LB_IP = '192.168.60.10';
  const EXTERNAL_IP = '192.168.60.20';

  const save = async () => sb.execOk('node', ['iptables-nft-save']);

  beforeAll(async () => {
    await removeLeftoverSandboxes(TAG);
    sb = await createSandbox({ tag: TAG, pods: 2, ports: [targetPort] });
    // Another program's rules, which neither sync nor cleanup may touch.
    await sb.execOk('node', ['iptables-nft', '-w', '-t', 'nat', '-A', 'PREROUTING', '-s', '198.51.100.0/24', '-m', 'comment', '--comment', 'foreign rule', '-j', 'RETURN']);
    await sb.execOk('node', ['iptables-nft', '-w', '-N', 'FOREIGN-CHAIN']);
    await sb.execOk('node', ['iptables-nft', '-w', '-A', 'FOREIGN-CHAIN', '-s', '198.51.100.1', '-j', 'DROP']);
    ipv4 = await startInstance(sb, 'IPv4', node(NODE, { addresses: [sb.plan.nodeIP], podCIDRs: [sb.plan.podCIDR] }), sb.plan.clusterCIDR);
  }, 120_000);

  afterAll(async () => {
    await ipv4?.backend.cleanup(ipv4!.ctx).catch(() => undefined);
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
    ipv4.feed.upsert(
      service('default', 'web', { type: 'NodePort', clusterIP: VIP, ports }),
      endpointSlice('default', 'web', { name: 'web-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }, { ip: pod2.ip, nodeName: NODE }], ports: slicePorts }),
    );
    await sync();
    await expectReaches(sb, ipv4, 'client', VIP, 80, 16, [pod1.name, pod2.name]);
    const udp = new Set<string>();
    for (let i = 0; i < 24 && udp.size < 2; i++) udp.add(await sb.udp('client', VIP, 53, { timeoutMs: 3000 }));
    expect(udp).toEqual(new Set([pod1.name, pod2.name]));
    expect(await explainedReach(sb, ipv4, 'client', VIP, 53, 'UDP')).toEqual(udp);
    await expectReaches(sb, ipv4, 'external', sb.plan.nodeIP, 30080, 16, [pod1.name, pod2.name]);
  });

  it('refuses connections to a service without endpoints at once', async () => {
    ipv4.feed.upsert(service('default', 'empty', { clusterIP: NO_EP_VIP, ports: [{ name: 'http', port: 80, targetPort }] }));
    await sync();
    await expectRefusedAtOnce(sb, 'client', NO_EP_VIP, 80);
    expect(await explainedReach(sb, ipv4, 'client', NO_EP_VIP, 80)).toEqual(new Set(['reject']));
  });

  it('writes a sync split into many transactions into an empty table, and again as a restarted daemon over its rules', async () => {
    await ipv4.backend.cleanup(ipv4.ctx);
    const nodeObject = node(NODE, { addresses: [sb.plan.nodeIP], podCIDRs: [sb.plan.podCIDR] });
    for (const round of ['empty table', 'restart']) {
      const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: sb.plan.clusterCIDR }), limits: { maxServicesPerTransaction: 1, maxLinesPerTransaction: 1000 }, commandTimeoutMs: 60_000 });
      const at = { backend, node: nodeToNodeInfo(nodeObject, 'IPv4') };
      await backend.start(testContext({ runner: sb.runner('node') as never, node: at.node }));
      const { state, changes } = ipv4.feed.checkpoint();
      const result = await backend.sync(state, changes);
      expect(result.ok, `${round}: ${result.error?.message}`).toBe(true);
      expect(result.stats?.transactions, round).toBe(3); // one per service port with endpoints, then the top level
      await expectReaches(sb, at, 'client', VIP, 80, 16, [pod1.name, pod2.name], round);
      await expectReaches(sb, at, 'external', sb.plan.nodeIP, 30080, 16, [pod1.name, pod2.name], round);
      await expectRefusedAtOnce(sb, 'client', NO_EP_VIP, 80);
    }
    // The first instance learns the kernel again with a full sync.
    expect(await sync()).toMatchObject({ full: true });
  });

  it('stops sending new connections to a removed endpoint after the next sync (partial sync)', async () => {
    ipv4.feed.upsert(endpointSlice('default', 'web', { name: 'web-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }], ports: slicePorts }));
    expect(await sync()).toMatchObject({ full: false });
    await expectReaches(sb, ipv4, 'client', VIP, 80, 12, [pod1.name]);
  });

  it('keeps a client on one endpoint with ClientIP affinity', async () => {
    ipv4.feed.upsert(
      service('default', 'sticky', { clusterIP: AFFINITY_VIP, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ name: 'http', port: 80, targetPort }] }),
      endpointSlice('default', 'sticky', { name: 'sticky-a', endpoints: [pod1.ip, pod2.ip], ports: [{ name: 'http', port: targetPort }] }),
    );
    await sync();
    const pinned = await expectOneAnswer(sb, 'client', AFFINITY_VIP, 80, 12);
    // A first connection may go to either endpoint; the pin is the kernel's, not the rules'.
    expect(await explainedReach(sb, ipv4, 'client', AFFINITY_VIP, 80)).toEqual(new Set([pod1.name, pod2.name]));
    expect([pod1.name, pod2.name]).toContain(pinned);
  });

  it('externalTrafficPolicy Local: NodePort traffic goes only to local endpoints and keeps the client address', async () => {
    ipv4.feed.upsert(
      service('default', 'local', { type: 'NodePort', clusterIP: '10.96.0.14', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort, nodePort: 30081 }] }),
      endpointSlice('default', 'local', { name: 'local-a', endpoints: [{ ip: pod1.ip, nodeName: NODE }, { ip: pod2.ip, nodeName: 'other-node' }], ports: [{ name: 'http', port: targetPort }] }),
    );
    await sync();
    await expectReaches(sb, ipv4, 'external', sb.plan.nodeIP, 30081, 12, [pod1.name]);
    expect(await sb.http('external', sb.plan.nodeIP, 30081, { path: '/clientip' })).toBe(sb.plan.externalIP);
    // In-cluster traffic to the ClusterIP still uses every endpoint.
    await expectReaches(sb, ipv4, 'client', '10.96.0.14', 80, 24, [pod1.name, pod2.name]);
  });

  it('LB IP with a source range admits one client and refuses another; externalIP reaches the endpoints', async () => {
    ipv4.feed.upsert(
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
    await expectReaches(sb, ipv4, 'external', LB_IP, 80, 2, [pod2.name]);
    const refused = await sb.tryHttp('client', LB_IP, 80, { timeoutMs: 1500 });
    expect(refused.ok).toBe(false);
    expect(await explainedReach(sb, ipv4, 'client', LB_IP, 80)).toEqual(new Set(['drop']));
    await expectReaches(sb, ipv4, 'external', EXTERNAL_IP, 80, 2, [pod2.name]);
  });

  it('deletes the UDP conntrack entry of a removed endpoint', async () => {
    ipv4.feed.upsert(
      service('default', 'dns', { clusterIP: UDP_VIP, ports: [{ name: 'dns', port: 53, targetPort, protocol: 'UDP' }] }),
      endpointSlice('default', 'dns', { name: 'dns-a', endpoints: [pod1.ip, pod2.ip], ports: [{ name: 'dns', port: targetPort, protocol: 'UDP' }] }),
    );
    await sync();
    const seen = new Set<string>();
    for (let i = 0; i < 24 && seen.size < 2; i++) seen.add(await sb.udp('client', UDP_VIP, 53));
    expect(seen).toEqual(new Set([pod1.name, pod2.name]));
    const entries = async () => (await sb.exec('node', ['conntrack', '-L', '-p', 'udp', '--orig-dst', UDP_VIP, '--reply-src', pod2.ip])).stdout;
    expect(await entries()).toContain(pod2.ip);
    ipv4.feed.upsert(endpointSlice('default', 'dns', { name: 'dns-a', endpoints: [pod1.ip], ports: [{ name: 'dns', port: targetPort, protocol: 'UDP' }] }));
    await sync();
    expect(await entries()).not.toContain(pod2.ip);
  });

  it('keeps foreign rules through syncs and cleanup, and cleanup leaves no KUBE-* chain', async () => {
    const before = await save();
    expect(before).toContain('foreign rule');
    expect(before).toMatch(/:KUBE-SERVICES/);
    await ipv4.backend.cleanup(ipv4.ctx);
    const after = await save();
    expect(after).not.toMatch(/KUBE-/);
    expect(after).toContain('-A PREROUTING -s 198.51.100.0/24 -m comment --comment "foreign rule" -j RETURN');
    expect(after).toContain('-A FOREIGN-CHAIN -s 198.51.100.1/32 -j DROP');
    // A second cleanup finds nothing and does not fail.
    await ipv4.backend.cleanup(ipv4.ctx);
  });
});

/** An iptables-save dump without its timestamps and packet counters, to compare two of them. */
const withoutCounters = (dump: string) =>
  dump
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ''))
    .join('\n');

describe.skipIf(unsupported6 !== undefined)('iptables backend on a real kernel: IPv6 on a dual-stack node', () => {
  let world: DualStack<IptablesBackend>;
  const save = (family: IPFamily) => world.sb.execOk('node', [family === 'IPv6' ? 'ip6tables-nft-save' : 'iptables-nft-save']);

  beforeAll(async () => {
    world = await startDualStack('ipte2e6', NODE, startInstance, async (sb) => withoutCounters(await sb.execOk('node', ['iptables-nft-save'])));
  }, 120_000);

  afterAll(async () => {
    await world?.ipv6.backend.cleanup(world!.ipv6.ctx).catch(() => undefined);
    await world?.ipv4.backend.cleanup(world!.ipv4.ctx).catch(() => undefined);
    await world?.sb.destroy();
  });

  ipv6TrafficTests(() => world.sb);

  it("cleanup leaves no KUBE-* chain in IPv6, and the IPv4 instance's rules are as it wrote them", async () => {
    expect(await save('IPv6')).toMatch(/:KUBE-SERVICES/);
    await world.ipv6.backend.cleanup(world.ipv6.ctx);
    expect(await save('IPv6')).not.toMatch(/KUBE-/);
    expect(withoutCounters(await save('IPv4'))).toBe(world.ipv4Before);
    expect(POD_NAMES).toContain(await world.sb.http('client', VIP4, 80));
  });
});
