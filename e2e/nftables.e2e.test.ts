// The nftables backend on a real kernel, inside a sandbox of network namespaces: the node's
// table is programmed by the backend, and clients in other namespaces check what reaches where.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import type { V1Node } from '@kubernetes/client-node';
import { emptyChangeSet, nodeToNodeInfo, realClock, type IPFamily } from '@kube-proxy-ts/core';
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
import { answers, expectOneAnswer, expectReaches, expectRefusedAtOnce, explainedReach } from './traffic.js';
import { POD_NAMES, VIP4, VIP6, ipv6TrafficTests, startDualStack, type DualStack } from './dual-stack.js';

function missingTool(): string | undefined {
  for (const tool of ['nft', 'conntrack', 'curl']) {
    try {
      execFileSync(tool, [tool === 'curl' ? '--version' : '--version'], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  return undefined;
}

const unsupported = sandboxUnsupportedReason() ?? missingTool();
if (unsupported) console.log(`nftables e2e skipped: ${unsupported}`);

const NODE = 'node-a';

// Runs as `node -e CONNECT_LOOP <host> <port> <ms>`: one HTTP request per new connection, back to
// back for <ms>; prints {ok, failed, first, last} (failures as messages, times as Date.now()).
const CONNECT_LOOP = `
const http = require('node:http');
const [host, port, ms] = process.argv.slice(1);
const first = Date.now();
const out = { ok: 0, failed: [], first, last: first };
function one() {
  if (Date.now() - first > Number(ms)) { out.last = Date.now(); console.log(JSON.stringify(out)); return; }
  const req = http.get({ host, port: Number(port), path: '/', agent: false, timeout: 2000 }, (res) => {
    res.resume();
    res.on('end', () => { out.ok++; setTimeout(one, 5); });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => { out.failed.push(String(e.message)); setTimeout(one, 5); });
}
one();
`;

type Instance = Awaited<ReturnType<typeof startInstance>>;

/** The backend instance of one family in the node namespace, fed as the daemon feeds it. */
async function startInstance(sb: Sandbox, ipFamily: IPFamily, nodeObject: V1Node, clusterCIDR: string) {
  const backend = new NftablesBackend({ ipFamily, config: proxyConfig({ clusterCIDR }), nftTimeoutMs: 30_000 });
  const ctx = testContext({ runner: sb.runner('node'), clock: realClock, node: nodeToNodeInfo(nodeObject, ipFamily) });
  await backend.start(ctx);
  const feed = new ClusterFeed({ ipFamily, node: nodeObject });
  feed.tracker.onServiceCIDRsChanged([sb.plan.serviceCIDR, sb.plan.ipv6.serviceCIDR]);
  const sync = async () => {
    const { state, changes } = feed.checkpoint();
    const r = await backend.sync(state, changes);
    if (!r.ok) throw r.error;
    return r;
  };
  return { backend, ctx, node: ctx.node, feed, sync };
}

describe.skipIf(unsupported !== undefined)('nftables backend on a real kernel', () => {
  let sb: Sandbox;
  let ipv4: Instance;
  const upsert: ClusterFeed['upsert'] = (...objects) => ipv4.feed.upsert(...objects);
  const sync = () => ipv4.sync();
  const eps = (pods: number[], extra: { ip: string; nodeName: string }[] = []) => [
    ...pods.map((i) => ({ ip: sb.pods[i - 1]!.ip, nodeName: NODE })),
    ...extra,
  ];
  const slice = (name: string, endpoints: ReturnType<typeof eps>, ports = [{ name: 'http', port: 8080 }]) =>
    endpointSlice('default', name, { name: `${name}-1`, endpoints, ports });

  beforeAll(async () => {
    await removeLeftoverSandboxes('nftx');
    sb = await createSandbox({ tag: 'nftx', pods: 3, ports: [8080] });
    // A table of someone else, which cleanup must leave alone.
    await sb.execOk('node', ['nft', 'add table inet bystander']);
    ipv4 = await startInstance(sb, 'IPv4', node(NODE, { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }), sb.plan.clusterCIDR);

    upsert(
      service('default', 'web', {
        type: 'NodePort',
        clusterIP: '10.96.0.10',
        ports: [
          { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 8080 },
        ],
      }),
    );
    upsert(
      endpointSlice('default', 'web', {
        name: 'web-1',
        endpoints: eps([1, 2, 3]),
        ports: [
          { name: 'http', port: 8080 },
          { name: 'dns', port: 8080, protocol: 'UDP' },
        ],
      }),
    );
    upsert(service('default', 'empty', { clusterIP: '10.96.0.11', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    upsert(
      service('default', 'sticky', {
        clusterIP: '10.96.0.12',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } },
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }),
    );
    upsert(slice('sticky', eps([1, 2, 3])));
    upsert(
      service('default', 'local', {
        type: 'NodePort',
        externalTrafficPolicy: 'Local',
        clusterIP: '10.96.0.13',
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30081 }],
      }),
    );
    // pod2 stands for an endpoint on another node
    upsert(slice('local', eps([1], [{ ip: sb.pods[1]!.ip, nodeName: 'node-b' }])));
    upsert(
      service('default', 'lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.14',
        loadBalancerIngress: ['192.168.60.10'],
        loadBalancerSourceRanges: ['10.0.0.0/8'],
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30082 }],
      }),
    );
    upsert(slice('lb', eps([1])));
    const first = await sync();
    expect(first.full).toBe(true);
  });

  afterAll(async () => {
    await ipv4?.backend.stop();
    await sb?.destroy();
  });

  it('reaches every endpoint of a ClusterIP over TCP and UDP', async () => {
    await expectReaches(sb, ipv4, 'client', '10.96.0.10', 80, 30, ['pod1', 'pod2', 'pod3']);
    const udp = new Set<string>();
    for (let i = 0; i < 30; i++) udp.add(await sb.udp('client', '10.96.0.10', 53));
    expect(udp).toEqual(new Set(['pod1', 'pod2', 'pod3']));
    expect(await explainedReach(sb, ipv4, 'client', '10.96.0.10', 53, 'UDP')).toEqual(udp);
  });

  it('reaches the service through a NodePort, from outside and from the node itself', async () => {
    await expectReaches(sb, ipv4, 'external', sb.node.ip, 30080, 30, ['pod1', 'pod2', 'pod3']);
    await expectReaches(sb, ipv4, 'node', sb.node.ip, 30080, 30, ['pod1', 'pod2', 'pod3']);
  });

  it('opens NodePorts on the node IP only, not on another address of the node (nodePortAddresses unset)', async () => {
    const other = '192.168.50.3';
    await sb.execOk('node', ['ip', 'addr', 'add', `${other}/24`, 'dev', 'eth0']);
    try {
      await sync(); // the NodePort addresses are read at every sync
      expect(['pod1', 'pod2', 'pod3']).toContain(await sb.http('external', sb.node.ip, 30080));
      const r = await sb.tryHttp('external', other, 30080, { timeoutMs: 3000 });
      expect(r.ok, `the second address answered: ${r.body}`).toBe(false);
    } finally {
      await sb.execOk('node', ['ip', 'addr', 'del', `${other}/24`, 'dev', 'eth0']);
    }
  });

  it('refuses a service without endpoints and an undefined port of a ClusterIP at once', async () => {
    await expectRefusedAtOnce(sb, 'client', '10.96.0.11', 80);
    await expectRefusedAtOnce(sb, 'client', '10.96.0.10', 81);
    expect(await explainedReach(sb, ipv4, 'client', '10.96.0.11', 80)).toEqual(new Set(['reject']));
    expect(await explainedReach(sb, ipv4, 'client', '10.96.0.10', 81)).toEqual(new Set(['reject']));
  });

  it('keeps a client on one endpoint with ClientIP affinity', async () => {
    const pinned = await expectOneAnswer(sb, 'client', '10.96.0.12', 80, 8);
    // A first connection may go to any endpoint; the pin lives in the kernel's affinity set.
    expect(await explainedReach(sb, ipv4, 'client', '10.96.0.12', 80)).toContain(pinned);
  });

  it('sends external traffic of an ETP Local service to local endpoints only, keeping the client IP', async () => {
    await expectReaches(sb, ipv4, 'external', sb.node.ip, 30081, 8, ['pod1']);
    expect(await sb.http('external', sb.node.ip, 30081, { path: '/clientip' })).toBe(sb.external.ip);
  });

  it('applies loadBalancerSourceRanges, and follows their update', async () => {
    expect((await sb.tryHttp('external', '192.168.60.10', 80, { timeoutMs: 1500 })).ok).toBe(false);
    expect(await explainedReach(sb, ipv4, 'external', '192.168.60.10', 80)).toEqual(new Set(['drop']));
    await expectReaches(sb, ipv4, 'client', '192.168.60.10', 80, 2, ['pod1']);
    upsert(
      service('default', 'lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.14',
        loadBalancerIngress: ['192.168.60.10'],
        loadBalancerSourceRanges: ['10.0.0.0/8', '192.168.50.0/24'],
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30082 }],
      }),
    );
    expect((await sync()).full).toBe(false);
    await expectReaches(sb, ipv4, 'external', '192.168.60.10', 80, 2, ['pod1']);
  });

  it('stops using a removed endpoint and flushes its UDP conntrack entries', async () => {
    for (let i = 0; i < 20; i++) await sb.udp('client', '10.96.0.10', 53);
    const pod3 = sb.pods[2]!.ip;
    const before = await sb.execOk('node', ['conntrack', '-L', '-p', 'udp', '--reply-src', pod3]).catch(() => '');
    expect(before).toContain(pod3);
    upsert(
      endpointSlice('default', 'web', {
        name: 'web-1',
        endpoints: eps([1, 2]),
        ports: [
          { name: 'http', port: 8080 },
          { name: 'dns', port: 8080, protocol: 'UDP' },
        ],
      }),
    );
    const r = await sync();
    expect(r.full).toBe(false);
    const after = await sb.exec('node', ['conntrack', '-L', '-p', 'udp', '--reply-src', pod3]);
    expect(after.stdout).not.toContain(pod3);
    await expectReaches(sb, ipv4, 'client', '10.96.0.10', 80, 20, ['pod1', 'pod2']);
    // The stale endpoint chain is gone a moment later.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const chains = await sb.execOk('node', ['nft', 'list', 'chains', 'ip']);
    expect(chains).toContain(`default/sticky/tcp/http__${pod3}/8080`);
    expect(chains).not.toContain(`default/web/tcp/http__${pod3}/8080`);
    expect(chains).not.toContain(`default/web/udp/dns__${pod3}/8080`);
  });

  it('drops traffic to an unallocated address of the Service CIDR, and follows the CIDRs', async () => {
    const unallocated = '10.96.0.99';
    // A flow the node forwarded is confirmed in conntrack; one dropped on the way is not.
    const tracked = async () => (await sb.exec('node', ['conntrack', '-L', '-d', unallocated])).stdout.includes(unallocated);
    expect((await sb.tryHttp('client', unallocated, 80, { timeoutMs: 1000 })).ok).toBe(false);
    expect(await tracked()).toBe(false);
    expect(await explainedReach(sb, ipv4, 'client', unallocated, 80)).toEqual(new Set(['drop']));

    // Without ServiceCIDRs a partial sync rewrites cluster-ips-check: the address is forwarded again.
    ipv4.feed.tracker.onServiceCIDRsChanged([]);
    expect((await sync()).full).toBe(false);
    expect(await sb.execOk('node', ['nft', 'list', 'chain', 'ip', 'kube-proxy', 'cluster-ips-check'])).not.toContain('drop');
    await sb.tryHttp('client', unallocated, 80, { timeoutMs: 1000 });
    expect(await tracked()).toBe(true);

    ipv4.feed.tracker.onServiceCIDRsChanged([sb.plan.serviceCIDR]);
    expect((await sync()).full).toBe(false);
    expect(await sb.execOk('node', ['nft', 'list', 'chain', 'ip', 'kube-proxy', 'cluster-ips-check'])).toMatch(/ip daddr (\{ )?10\.96\.0\.0\/16( \})? drop comment "Drop traffic to unallocated ClusterIPs"/);
  });

  it('masquerades an endpoint that reaches itself through the service, and only then', async () => {
    // pod1 -> ClusterIP of web (pods 1-3): landing on pod1 itself needs the hairpin masquerade
    // (else pod1 answers itself directly and the connection fails); elsewhere its IP is kept.
    const seen = await answers(sb, 'pod1', '10.96.0.10', 80, 24);
    expect([...seen].filter((a) => a.startsWith('error'))).toEqual([]);
    expect(seen).toContain('pod1');
    const sources = new Set<string>();
    for (let i = 0; i < 24; i++) sources.add(await sb.http('pod1', '10.96.0.10', 80, { path: '/clientip' }));
    expect(sources).toContain(sb.pods[0]!.ip);
    // explain, from the kernel's table: only the path back to pod1 itself is masqueraded (hairpin-connections).
    const e = await ipv4.backend.explain({ src: sb.pods[0]!.ip, dst: '10.96.0.10', port: 80, protocol: 'TCP' }, ipv4.node);
    const pod1 = sb.pods[0]!.ip;
    expect(e.paths.map((p) => p.endpoint?.split(':')[0])).toContain(pod1);
    for (const p of e.paths) expect([p.endpoint, p.masquerade]).toEqual([p.endpoint, p.endpoint?.startsWith(`${pod1}:`)]);
    expect([...sources].some((ip) => ip !== sb.pods[0]!.ip)).toBe(true);
  });

  it('serves connections throughout while a restarted daemon reconciles a table of 2000 services', async () => {
    for (let i = 0; i < 2000; i++) {
      const name = `bulk${i}`;
      upsert(service('bulk', name, { clusterIP: `10.96.${100 + (i >> 8)}.${i & 255}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
      upsert(endpointSlice('bulk', name, { name: `${name}-1`, endpoints: Array.from({ length: 5 }, (_, j) => `10.200.${i >> 5}.${((i & 31) << 3) + j + 1}`), ports: [{ name: 'http', port: 8080 }] }));
    }
    await sync();
    // Transactions of 500 service ports, so that the traffic crosses the commits of a reconcile
    // that rewrites the table piece by piece (as a larger one does with the default size).
    const restarted = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: sb.plan.clusterCIDR }), nftTimeoutMs: 30_000, servicesPerTransaction: 500 });
    const nodeObject = node(NODE, { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] });
    await restarted.start(testContext({ runner: sb.runner('node'), clock: realClock, node: nodeToNodeInfo(nodeObject, 'IPv4') }));
    try {
      const traffic = sb.execOk('client', [process.execPath, '-e', CONNECT_LOOP, '10.96.0.10', '80', '8000'], { timeoutMs: 30_000 });
      await new Promise((r) => setTimeout(r, 1000));
      const started = Date.now();
      const r = await restarted.sync(ipv4.feed.checkpoint().state, emptyChangeSet());
      const ended = Date.now();
      expect(r.ok, r.error?.message).toBe(true);
      expect(r.full).toBe(true);
      expect(r.stats?.transactions).toBeGreaterThan(2);
      const loop = JSON.parse(await traffic) as { ok: number; failed: string[]; first: number; last: number };
      expect(loop.failed).toEqual([]);
      expect(loop.first).toBeLessThan(started);
      expect(loop.last, 'the sync outlasted the traffic loop').toBeGreaterThan(ended);
      expect(loop.ok).toBeGreaterThan(20);
      expect(['pod1', 'pod2', 'pod3']).toContain(await sb.http('client', '10.96.0.10', 80));
    } finally {
      await restarted.stop();
    }
  });

  it('programs exactly what inspect() reports', async () => {
    const picture = (await ipv4.backend.inspect()) as { chains: Record<string, string[]> };
    const listing = JSON.parse(await sb.execOk('node', ['nft', '-j', 'list', 'chains', 'ip'])) as { nftables: { chain?: { table: string; name: string } }[] };
    const kernelChains = listing.nftables.flatMap((o) => (o.chain?.table === 'kube-proxy' ? [o.chain.name] : [])).sort();
    expect(kernelChains).toEqual(Object.keys(picture.chains).sort());
  });

  it('cleanup removes our table and nothing else', async () => {
    await ipv4.backend.cleanup(ipv4.ctx);
    const tables = await sb.execOk('node', ['nft', 'list', 'tables']);
    expect(tables).not.toContain('kube-proxy');
    expect(tables).toContain('table inet bystander');
    expect((await sb.tryHttp('client', '10.96.0.10', 80, { timeoutMs: 1000 })).ok).toBe(false);
  });
});

describe.skipIf(unsupported !== undefined)('nftables backend on a real kernel: IPv6 on a dual-stack node', () => {
  let world: DualStack<NftablesBackend>;
  const listTable = (sb: Sandbox, family: 'ip' | 'ip6') => sb.execOk('node', ['nft', 'list', 'table', family, 'kube-proxy']);

  beforeAll(async () => {
    world = await startDualStack('nftx6', NODE, startInstance, (sb) => listTable(sb, 'ip'));
  });

  afterAll(async () => {
    await world?.ipv6.backend.stop();
    await world?.ipv4.backend.stop();
    await world?.sb.destroy();
  });

  ipv6TrafficTests(() => world.sb);

  it("cleanup removes the ip6 table, and the IPv4 instance's table is as it wrote it", async () => {
    const { sb } = world;
    expect(await listTable(sb, 'ip6')).toContain(VIP6);
    await world.ipv6.backend.cleanup(world.ipv6.ctx);
    expect(await sb.execOk('node', ['nft', 'list', 'tables', 'ip6'])).not.toContain('kube-proxy');
    expect(await listTable(sb, 'ip')).toBe(world.ipv4Before);
    expect(POD_NAMES).toContain(await sb.http('client', VIP4, 80));
  });
});
