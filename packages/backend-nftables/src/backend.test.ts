import { describe, expect, it, vi } from 'vitest';
import { ProxyStateTracker, emptyChangeSet, type ChangeSet, type ProxyConfig, type ProxyState } from '@kube-proxy-ts/core';
import {
  createRecordingRunner,
  endpointSlice,
  node,
  nodeInfo,
  proxyConfig,
  service,
  testContext,
  type DeepPartial,
  type RecordingRunner,
} from '@kube-proxy-ts/testing';
import { NftablesBackend, type NftablesBackendOptions } from './backend.js';
import { NftScriptModel, dataPlaneView, expandScript } from './nft-script-model.js';

type V1Service = ReturnType<typeof service>;
type V1EndpointSlice = ReturnType<typeof endpointSlice>;

const NODE = 'node1';
const NODE_IP = '192.168.0.2';

interface Options {
  config?: DeepPartial<ProxyConfig>;
  backend?: Partial<NftablesBackendOptions>;
  runner?: RecordingRunner;
}

/** A started backend over a recording runner whose nft scripts are applied to a model table. */
async function fixture(opts: Options = {}) {
  const runner = opts.runner ?? createRecordingRunner();
  const model = new NftScriptModel();
  runner.on('nft', (args, stdin) => {
    if (args[0] === '-f') {
      try {
        model.apply(stdin ?? '');
      } catch (e) {
        return { code: 1, stderr: (e as Error).message };
      }
    }
    // the names listing a new process starts from
    const listing = /^-t -j list (chains|sets|maps) ip$/.exec(args.join(' '));
    if (listing) {
      const t = model.table('ip', 'kube-proxy');
      const kind = listing[1]!.slice(0, -1);
      const objects =
        kind === 'chain'
          ? [...(t?.chains.keys() ?? [])].map((name) => ({ chain: { family: 'ip', table: 'kube-proxy', name } }))
          : [...(t?.containers ?? [])]
              .filter(([, c]) => c.kind === kind)
              .map(([name, c]) => {
                const timeout = /timeout (\d+)s/.exec(c.spec)?.[1];
                return { [kind]: { family: 'ip', table: 'kube-proxy', name, ...(timeout ? { timeout: Number(timeout) } : {}) } };
              });
      return { code: 0, stdout: JSON.stringify({ nftables: objects }) };
    }
    return { code: 0 };
  });
  runner.on('ip', () => ({ stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: '127.0.0.1' }, { family: 'inet', local: NODE_IP }] }]) }));
  const ctx = testContext({ runner, node: nodeInfo({ name: NODE, addresses: [NODE_IP] }) });
  const config = proxyConfig({ clusterCIDR: '10.0.0.0/8', ...opts.config });
  const backend = new NftablesBackend({ ipFamily: 'IPv4', config, ...opts.backend });
  await backend.start(ctx);
  const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
  tracker.onNodeAdd(node(NODE, { addresses: [NODE_IP] }));
  tracker.onNodeSynced();
  tracker.onServicesSynced();
  tracker.onEndpointSlicesSynced();
  const services = new Map<string, V1Service>();
  const slices = new Map<string, V1EndpointSlice>();
  const f = {
    runner,
    model,
    ctx,
    backend,
    tracker,
    upsert(obj: V1Service | V1EndpointSlice) {
      const key = `${obj.kind}/${obj.metadata!.namespace}/${obj.metadata!.name}`;
      if (obj.kind === 'Service') {
        const prev = services.get(key);
        if (prev) tracker.onServiceUpdate(prev, obj as V1Service);
        else tracker.onServiceAdd(obj as V1Service);
        services.set(key, obj as V1Service);
      } else {
        const prev = slices.get(key);
        if (prev) tracker.onEndpointSliceUpdate(prev, obj as V1EndpointSlice);
        else tracker.onEndpointSliceAdd(obj as V1EndpointSlice);
        slices.set(key, obj as V1EndpointSlice);
      }
    },
    remove(obj: V1Service | V1EndpointSlice) {
      const key = `${obj.kind}/${obj.metadata!.namespace}/${obj.metadata!.name}`;
      if (obj.kind === 'Service') {
        tracker.onServiceDelete(services.get(key)!);
        services.delete(key);
      } else {
        tracker.onEndpointSliceDelete(slices.get(key)!);
        slices.delete(key);
      }
    },
    /**
     * Syncs the next checkpoint; returns the nft scripts it ran, as sent (raw) and as one
     * command a line (scripts: block forms taken apart, see expandScript).
     */
    async sync(): Promise<{ scripts: string[]; raw: string[]; state: ProxyState; changes: ChangeSet; full: boolean }> {
      const { state, changes } = tracker.checkpoint();
      runner.reset();
      const result = await backend.sync(state, changes);
      if (!result.ok) throw result.error;
      const raw = runner.callsTo('nft').filter((c) => c.args[0] === '-f').map((c) => c.stdin ?? '');
      return { scripts: raw.map((s) => expandScript(s).map((l) => `${l}\n`).join('')), raw, state, changes, full: result.full };
    },
    table() {
      return model.table('ip', 'kube-proxy');
    },
    /** Non-empty chains of the model, as inspect() reports them (endpoint maps written out). */
    modelChains() {
      const t = f.table();
      return Object.fromEntries([...(t ? dataPlaneView(t).chains : [])].filter(([, r]) => r.length > 0));
    },
    elements(container: string) {
      const c = f.table()?.containers.get(container);
      return [...(c?.elements ?? [])].map(([k, v]) => `${k}${v.comment ? ` comment "${v.comment}"` : ''}${v.value ? ` : ${v.value}` : ''}`).sort();
    },
  };
  return f;
}

/** The model's table as the data plane sees it: chains with their rules, containers with their elements. */
function picture(model: NftScriptModel): unknown {
  const table = model.table('ip', 'kube-proxy');
  const t = table && dataPlaneView(table);
  return {
    chains: Object.fromEntries(t?.chains ?? []),
    containers: Object.fromEntries([...(t?.containers ?? [])].map(([name, c]) => [name, [...c.elements.keys()].sort()])),
  };
}

const svcPort = (name: string, port: number, extra: Record<string, unknown> = {}) => ({ name, port, protocol: 'TCP' as const, ...extra });
const slice = (ns: string, name: string, endpoints: Parameters<typeof endpointSlice>[2] extends infer _ ? Array<string | { ip: string; nodeName?: string; ready?: boolean; serving?: boolean; terminating?: boolean }> : never, port = 80, protocol: 'TCP' | 'UDP' = 'TCP') =>
  endpointSlice(ns, name, { name: `${name}-1`, endpoints, ports: [{ name: 'p80', port, protocol }] });

/** upstream's TestOverallNFTablesRules services. */
// svc5 of upstream's overall scenario: an LB with source ranges and ClientIP affinity.
function affinityLoadBalancer(timeoutSeconds: number) {
  return service('ns5', 'svc5', {
    type: 'LoadBalancer',
    externalTrafficPolicy: 'Cluster',
    clusterIP: '172.30.0.45',
    ports: [svcPort('p80', 80, { nodePort: 3002 })],
    loadBalancerIngress: ['5.6.7.8'],
    loadBalancerSourceRanges: ['203.0.113.0/25'],
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds } },
  });
}

function overallWorld(f: Awaited<ReturnType<typeof fixture>>) {
  f.upsert(service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [svcPort('p80', 80)] }));
  f.upsert(
    service('ns2', 'svc2', {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      clusterIP: '172.30.0.42',
      ports: [svcPort('p80', 80, { nodePort: 3001 })],
      loadBalancerIngress: ['1.2.3.4'],
      externalIPs: ['192.168.99.22'],
      healthCheckNodePort: 30000,
    }),
  );
  f.upsert(service('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [svcPort('p80', 80, { nodePort: 3003 })] }));
  f.upsert(service('ns4', 'svc4', { type: 'NodePort', clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: [svcPort('p80', 80, { nodePort: 3004 })] }));
  f.upsert(affinityLoadBalancer(10800));
  f.upsert(service('ns6', 'svc6', { clusterIP: '172.30.0.46', ports: [svcPort('p80', 80)] }));
  // Local endpoints as upstream's: 10.180.0.1, .3 and .5 on this node.
  f.upsert(slice('ns1', 'svc1', [{ ip: '10.180.0.1', nodeName: NODE }]));
  f.upsert(slice('ns2', 'svc2', ['10.180.0.2']));
  f.upsert(slice('ns3', 'svc3', [{ ip: '10.180.0.3', nodeName: NODE }]));
  f.upsert(slice('ns4', 'svc4', ['10.180.0.4', { ip: '10.180.0.5', nodeName: NODE }]));
  f.upsert(slice('ns5', 'svc5', [{ ip: '10.180.0.3', nodeName: NODE }]));
}

describe('nftables backend: full sync (upstream TestOverallNFTablesRules)', () => {
  it('writes upstream’s base layout', async () => {
    // Upstream's test proxier opens NodePorts on every local address.
    const f = await fixture({ config: { nodePortAddresses: ['0.0.0.0/0'] } });
    const { scripts, full } = await f.sync();
    expect(full).toBe(true);
    const all = scripts.join('');
    expect(all).toContain('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n');
    expect(all).toContain('add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }\n');
    expect(all).toContain('add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }\n');
    expect(all).toContain('add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }\n');
    expect(all).toContain('add set ip kube-proxy hairpin-connections { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; comment "service hairpin connections" ; }\n');
    expect(all).toContain('add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }\n');
    // upstream's masquerading rules, marks set inline (no chain of their own)
    expect(all).toContain('add rule ip kube-proxy masquerading mark and 0x004000 != 0 mark set mark xor 0x004000 masquerade fully-random\n');
    expect(all).toContain('add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random\n');
    expect(all).not.toContain('mark-for-masquerade');
    expect(all).toContain('add rule ip kube-proxy services ip daddr @cluster-ips ip saddr != 10.0.0.0/8 mark set mark or 0x004000 comment "masquerade clusterIP traffic from outside cluster"\n');
    expect(all).toContain('add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"\n');
    expect(all).toContain('add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check\n');
    expect(all).toContain('add rule ip kube-proxy filter-output ct state new jump cluster-ips-check\n');
    expect(all).toContain('add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check\n');
    expect(all).toContain('add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n');
    expect(all).toContain('add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }\n');
    // NodePorts on every address: no nodeport-ips set survives the transaction
    expect(f.table()!.containers.has('nodeport-ips')).toBe(false);
    expect(f.runner.callsTo('ip')).toHaveLength(0);
  });

  it('writes every service of the overall scenario as upstream does', async () => {
    const f = await fixture();
    overallWorld(f);
    const { scripts } = await f.sync();
    const all = scripts.join('');
    const has = (line: string) => expect(all).toContain(`${line}\n`);
    // svc1: ClusterIP (off-cluster sources are marked in the services chain, for every ClusterIP);
    // the service chain DNATs itself; hairpin traffic is masqueraded through hairpin-connections
    has('add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80');
    expect(all).not.toContain('endpoint-5OJB2KTY');
    has('add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random');
    // svc2: LoadBalancer, ETP Local, no local endpoint
    has('add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"');
    has('add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local mark set mark or 0x004000 comment "masquerade local traffic"');
    has('add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"');
    expect(all).not.toContain('local-42NFTM6N');
    // svc3: NodePort, Cluster policy
    has('add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 mark set mark or 0x004000 comment "masquerade"');
    has('add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80');
    // svc4: two endpoints, numbered in an endpoint map, picked with numgen (half each)
    has('add map ip kube-proxy endpoints-0 { typeof numgen random mod 1 : ip daddr . tcp dport ; comment "service endpoints picked by numgen" ; }');
    has('add element ip kube-proxy endpoints-0 { 0 : 10.180.0.4 . 80, 1 : 10.180.0.5 . 80 }');
    has('add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 2 offset 0 map @endpoints-0');
    // the map's elements come before the rule that DNATs to them
    expect(all.indexOf('add element ip kube-proxy endpoints-0')).toBeLessThan(all.indexOf('map @endpoints-0'));
    // svc5: affinity keeps upstream's endpoint chains (their rule updates the affinity set)
    has('add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }');
    has('add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80');
    has('add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }');
    has('add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80');
    has('add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }');
    has('add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop');

    expect(f.elements('service-ips')).toEqual(
      [
        '1.2.3.4 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80',
        '172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80',
        '172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80',
        '172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80',
        '172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80',
        '172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80',
        '192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80',
        '192.168.99.33 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80',
        '5.6.7.8 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80',
      ].sort(),
    );
    expect(f.elements('service-nodeports')).toEqual(
      [
        'tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80',
        'tcp . 3002 : goto external-HVFWP5L3-ns5/svc5/tcp/p80',
        'tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80',
        'tcp . 3004 : goto external-LAUZTJTB-ns4/svc4/tcp/p80',
      ].sort(),
    );
    expect(f.elements('no-endpoint-services')).toEqual(
      [
        '1.2.3.4 . tcp . 80 comment "ns2/svc2:p80" : drop',
        '172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain',
        '192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop',
      ].sort(),
    );
    expect(f.elements('no-endpoint-nodeports')).toEqual(['tcp . 3001 comment "ns2/svc2:p80" : drop']);
    expect(f.elements('firewall-ips')).toEqual(['5.6.7.8 . tcp . 80 : goto firewall-HVFWP5L3-ns5/svc5/tcp/p80']);
    expect(f.elements('cluster-ips')).toEqual(['172.30.0.41', '172.30.0.42', '172.30.0.43', '172.30.0.44', '172.30.0.45', '172.30.0.46']);
    // upstream's elements: one per local endpoint, 10.180.0.3:80 (svc3 and svc5) once
    expect(f.elements('hairpin-connections')).toEqual(['10.180.0.1 . 10.180.0.1 . tcp . 80', '10.180.0.3 . 10.180.0.3 . tcp . 80', '10.180.0.5 . 10.180.0.5 . tcp . 80']);

    // inspect() reports what the model table holds
    const picture = (await f.backend.inspect()) as { chains: Record<string, string[]>; containers: Record<string, string[]> };
    expect(picture.chains).toEqual(f.modelChains());
    expect(picture.containers['map service-ips']).toEqual(f.elements('service-ips'));
  });

  it('opens NodePorts on the node\'s primary IP only when nodePortAddresses is unset (upstream\'s nftables default)', async () => {
    const f = await fixture();
    f.runner.on('ip', () => ({ stdout: JSON.stringify([{ addr_info: ['127.0.0.1', NODE_IP, '192.168.7.7'].map((local) => ({ family: 'inet', local })) }]) }));
    overallWorld(f);
    const all = (await f.sync()).scripts.join('');
    expect(all).toContain('add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n');
    expect(all).not.toContain('fib daddr type local');
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP]);
  });

  it('restricts NodePorts to nodePortAddresses through nodeport-ips, never localhost', async () => {
    const f = await fixture({ config: { nodePortAddresses: ['192.168.0.0/24', '127.0.0.0/8'] } });
    overallWorld(f);
    const { scripts } = await f.sync();
    const all = scripts.join('');
    expect(all).toContain('add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n');
    expect(all).toContain('add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n');
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP]);
  });

  it('follows the node\'s addresses for nodeport-ips at every sync, in a partial sync', async () => {
    const f = await fixture({ config: { nodePortAddresses: ['192.168.0.0/16'] } });
    overallWorld(f);
    await f.sync();
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP]);
    f.runner.on('ip', () => ({ stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: NODE_IP }, { family: 'inet', local: '192.168.7.7' }] }]) }));
    const { scripts, full } = await f.sync();
    expect(full).toBe(false);
    expect(scripts.join('')).toContain('flush set ip kube-proxy nodeport-ips\n');
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP, '192.168.7.7']);
    // Nothing else moved: the next sync writes nothing.
    expect((await f.sync()).scripts).toEqual([]);
  });

  it('writes a change while the node\'s addresses are listed, and the moved addresses after it', async () => {
    const f = await fixture({ config: { nodePortAddresses: ['192.168.0.0/16'] } });
    overallWorld(f);
    await f.sync();
    let release: () => void = () => undefined;
    const listed = new Promise<void>((r) => (release = r));
    f.runner.on('ip', async () => {
      await listed;
      return { stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: NODE_IP }, { family: 'inet', local: '192.168.7.7' }] }]) };
    });
    f.upsert(slice('ns1', 'svc1', [{ ip: '10.180.0.1', nodeName: NODE }, '10.180.0.9']));
    const { state, changes } = f.tracker.checkpoint();
    f.runner.reset();
    const syncing = f.backend.sync(state, changes);
    await vi.waitFor(() => expect(f.runner.callsTo('nft').length).toBe(1));
    expect(f.runner.callsTo('nft')[0]!.stdin).toContain('10.180.0.9');
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP]);
    release();
    expect((await syncing).ok).toBe(true);
    expect(f.runner.callsTo('nft')).toHaveLength(2);
    expect(f.elements('nodeport-ips')).toEqual([NODE_IP, '192.168.7.7']);
  });

  it('masquerades everything with masqueradeAll and drops unallocated service CIDR addresses', async () => {
    const f = await fixture({ config: { nftables: { masqueradeAll: true } } });
    f.tracker.onServiceCIDRsChanged(['172.30.0.0/16', 'fd00::/108']);
    overallWorld(f);
    const all = (await f.sync()).scripts.join('');
    expect(all).toContain('add rule ip kube-proxy services ip daddr @cluster-ips mark set mark or 0x004000 comment "masquerade all clusterIP traffic"\n');
    expect(all).not.toContain('masquerade clusterIP traffic from outside cluster');
    expect(all).toContain('add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"\n');
  });

  it('skips the local-traffic rules when the detector has nothing to match on', async () => {
    const f = await fixture({ config: { clusterCIDR: '' } });
    overallWorld(f);
    const all = (await f.sync()).scripts.join('');
    expect(all).not.toContain('saddr != 10.0.0.0/8');
    expect(all).not.toContain('short-circuit pod traffic');
    expect(all).toContain('comment "short-circuit local traffic"');
  });

  it('uses the local policy chain for ETP Local with a local endpoint, and ITP Local drops without one', async () => {
    const f = await fixture();
    f.upsert(service('ns1', 'etp', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.50', ports: [svcPort('p80', 80, { nodePort: 3050 })] }));
    f.upsert(slice('ns1', 'etp', ['10.180.0.1', { ip: '10.180.0.2', nodeName: NODE }]));
    f.upsert(service('ns1', 'itp', { internalTrafficPolicy: 'Local', clusterIP: '172.30.0.51', ports: [svcPort('p80', 80)] }));
    f.upsert(slice('ns1', 'itp', ['10.180.0.3']));
    await f.sync();
    const chains = f.modelChains();
    const local = Object.keys(chains).find((c) => c.startsWith('local-') && c.endsWith('ns1/etp/tcp/p80'))!;
    expect(chains[local]).toEqual(['meta l4proto tcp dnat to 10.180.0.2:80']);
    const ext = Object.keys(chains).find((c) => c.startsWith('external-') && c.endsWith('ns1/etp/tcp/p80'))!;
    expect(chains[ext]!.at(-1)).toBe(`goto ${local}`);
    expect(f.elements('no-endpoint-services')).toEqual(['172.30.0.51 . tcp . 80 comment "ns1/itp:p80" : drop']);
    expect(Object.keys(chains).some((c) => c.includes('ns1/itp/'))).toBe(false);
  });

  it('adds the LB IPs to the allowed sources when a source range holds the node IP', async () => {
    const f = await fixture();
    f.upsert(
      service('ns1', 'lb', {
        type: 'LoadBalancer',
        clusterIP: '172.30.0.60',
        ports: [svcPort('p80', 80, { nodePort: 3060 })],
        loadBalancerIngress: ['5.6.7.8'],
        loadBalancerSourceRanges: ['192.168.0.0/24', '203.0.113.0/25'],
      }),
    );
    f.upsert(slice('ns1', 'lb', ['10.180.0.1']));
    await f.sync();
    const fw = Object.entries(f.modelChains()).find(([c]) => c.startsWith('firewall-') && c.includes('/'))!;
    expect(fw[1]).toEqual(['ip saddr != { 192.168.0.0/24, 203.0.113.0/25, 5.6.7.8 } drop']);
  });
});

describe('nftables backend: partial sync', () => {
  it('rewrites only the changed chains and elements, in one transaction, without listing', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns4', 'svc4', ['10.180.0.4', { ip: '10.180.0.5', nodeName: NODE }, { ip: '10.180.0.6', nodeName: NODE }]));
    const { scripts, raw, full } = await f.sync();
    expect(full).toBe(false);
    expect(f.runner.callsTo('nft').map((c) => c.args.join(' '))).toEqual(['-f -']);
    expect(scripts).toHaveLength(1);
    // nothing that makes nft read every chain of the table first (rules go in block form)
    expect(raw[0]).not.toMatch(/^(add rule|add element|delete) /m);
    const lines = scripts[0]!.trim().split('\n');
    // the service chain's one rule, its endpoints at free numbers of the map (the old ones wait
    // for a later deletion), and the new endpoint's hairpin pair; other services untouched
    expect([...new Set(lines.filter((l) => l.startsWith('add chain')).map((l) => l.split(' ')[4]))]).toEqual(['service-LAUZTJTB-ns4/svc4/tcp/p80']);
    expect(lines.filter((l) => l.startsWith('add rule'))).toEqual([
      'add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 3 offset 2 map @endpoints-0',
    ]);
    expect(f.modelChains()['service-LAUZTJTB-ns4/svc4/tcp/p80']).toEqual([
      'meta l4proto tcp dnat ip to numgen random mod 3 map { 0 : 10.180.0.4 . 80, 1 : 10.180.0.5 . 80, 2 : 10.180.0.6 . 80 }',
    ]);
    expect(scripts[0]).not.toMatch(/ns[12356]\//);
    expect(lines.filter((l) => l.includes('element'))).toEqual([
      'add element ip kube-proxy endpoints-0 { 2 : 10.180.0.4 . 80, 3 : 10.180.0.5 . 80, 4 : 10.180.0.6 . 80 }',
      'add element ip kube-proxy hairpin-connections { 10.180.0.6 . 10.180.0.6 . tcp . 80 }',
    ]);
    expect(f.modelChains()).toEqual((await f.backend.inspect() as { chains: unknown }).chains);
  });

  it('removes an endpoint without making nft list the chains: its hairpin pair goes with the stale-chain timer', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns4', 'svc4', ['10.180.0.4']));
    const { raw } = await f.sync();
    expect(raw).toHaveLength(1);
    expect(raw[0]).not.toMatch(/^(add rule|add element|delete) /m);
    expect(f.modelChains()['service-LAUZTJTB-ns4/svc4/tcp/p80']).toEqual(['meta l4proto tcp dnat to 10.180.0.4:80']);
    expect(f.elements('hairpin-connections')).toContain('10.180.0.5 . 10.180.0.5 . tcp . 80');
    expect(f.elements('endpoints-0')).toEqual(['0 : 10.180.0.4 . 80', '1 : 10.180.0.5 . 80']);
    f.runner.reset();
    await f.ctx.clock.advanceAsync(1100);
    await f.backend.stop();
    // the hairpin pair and the endpoints the chain no longer DNATs to, in one transaction
    expect(f.runner.stdinsTo('nft')).toEqual([
      'delete element ip kube-proxy hairpin-connections { 10.180.0.5 . 10.180.0.5 . tcp . 80 }\ndelete element ip kube-proxy endpoints-0 { 0, 1 }\n',
    ]);
    expect(f.elements('hairpin-connections')).not.toContain('10.180.0.5 . 10.180.0.5 . tcp . 80');
    expect(f.elements('endpoints-0')).toEqual([]);
    // an unchanged state writes nothing afterwards
    expect((await f.sync()).raw).toEqual([]);
  });

  it('recomputes everything on a node change but rewrites only what changed', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.tracker.onNodeUpdate(node(NODE, { addresses: [NODE_IP] }), node(NODE, { addresses: [NODE_IP], zone: 'z1' }));
    const { scripts, full, changes } = await f.sync();
    expect(changes.nodeChanged).toBe(true);
    expect(full).toBe(true);
    const text = scripts.join('');
    expect(text).toContain('flush chain ip kube-proxy services\n'); // the fixed part is rewritten
    expect(text.split('\n').filter((l) => /add chain ip kube-proxy (service|endpoint)-[A-Z2-7]{8}-/.test(l))).toEqual([]);
    expect(text).not.toContain('flush map');
    expect(f.elements('service-ips')).toHaveLength(9);
  });

  it('rewrites cluster-ips-check alone, atomically, when the Service CIDRs change', async () => {
    const f = await fixture();
    overallWorld(f);
    const first = await f.sync();
    expect(first.scripts.join('')).not.toContain('Drop traffic to unallocated ClusterIPs');
    const drop = (cidrs: string) => `\tip daddr { ${cidrs} } drop comment "Drop traffic to unallocated ClusterIPs"`;
    const reject = '\tip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"';
    // The set is declared again (a no-op) so that nft knows it without reading every chain.
    const rewrite = (...rules: string[]) => [
      'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }',
      'flush chain ip kube-proxy cluster-ips-check',
      'add chain ip kube-proxy cluster-ips-check {',
      reject,
      ...rules,
      '}',
      '',
    ].join('\n');

    f.tracker.onServiceCIDRsChanged(['172.30.0.0/16', 'fd00::/108']);
    let r = await f.sync();
    expect(r.full).toBe(false);
    expect(r.raw).toEqual([rewrite(drop('172.30.0.0/16'))]);
    expect(f.modelChains()['cluster-ips-check']).toEqual([
      'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
      'ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"',
    ]);
    expect(f.modelChains()).toEqual(((await f.backend.inspect()) as { chains: unknown }).chains);

    // A second range, together with a Service change: one transaction holds both.
    f.tracker.onServiceCIDRsChanged(['172.30.0.0/16', '172.31.0.0/16']);
    f.upsert(slice('ns1', 'svc1', ['10.180.0.1', '10.180.0.9']));
    r = await f.sync();
    expect(r.full).toBe(false);
    expect(r.raw).toHaveLength(1);
    expect(r.raw[0]).toContain(drop('172.30.0.0/16, 172.31.0.0/16'));
    expect(r.scripts[0]).toMatch(/service-ULMVA6XW-ns1\/svc1\/tcp\/p80/);
    expect(r.scripts[0]).not.toMatch(/ns[2-6]\//);

    // The last ServiceCIDR goes: only the reject rule is left.
    f.tracker.onServiceCIDRsChanged([]);
    r = await f.sync();
    expect(r.raw).toEqual([rewrite()]);
    expect(f.modelChains()['cluster-ips-check']).toEqual(['ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"']);
    expect((await f.sync()).raw).toEqual([]);
  });

  it('an unchanged state writes nothing', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    const { scripts } = await f.sync();
    expect(scripts).toEqual([]);
  });

  it('moves a service to reject when its endpoints go, flushes stale chains and deletes them a second later', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns1', 'svc1', []));
    const { scripts } = await f.sync();
    const text = scripts.join('');
    expect(text).toContain('delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }\n');
    expect(text).toContain('add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : goto reject-chain }\n');
    expect(text).toContain('flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n');
    expect(text).toContain('delete element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1 . tcp . 80 }\n');
    expect(text).not.toContain('delete chain');
    expect(f.table()!.chains.has('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(true);

    f.runner.reset();
    await f.ctx.clock.advanceAsync(1100);
    await f.backend.stop();
    const deletion = f.runner.stdinsTo('nft').join('');
    expect(deletion).toContain('delete chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n');
    expect(f.table()!.chains.has('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(false);
  });

  it('deletes due stale chains inside the next sync’s transaction when nft reads the chains for it anyway', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns1', 'svc1', []));
    await f.sync();
    f.ctx.clock.advance(1010); // due, but the deletion timer (a little later) has not fired
    f.remove(service('ns6', 'svc6', { clusterIP: '172.30.0.46', ports: [svcPort('p80', 80)] })); // deletes its element
    f.upsert(slice('ns3', 'svc3', [{ ip: '10.180.0.3', nodeName: NODE }, { ip: '10.180.0.9', nodeName: NODE }]));
    const { scripts } = await f.sync();
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toContain('delete element ip kube-proxy no-endpoint-services');
    expect(scripts[0]).toContain('delete chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n');
    expect(scripts[0]).toContain('add element ip kube-proxy hairpin-connections { 10.180.0.9 . 10.180.0.9 . tcp . 80 }');
    expect(f.table()!.chains.has('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(false);
  });

  it('leaves due stale chains to the deletion timer when the sync needs no chain listing', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns1', 'svc1', []));
    await f.sync();
    f.ctx.clock.advance(1010);
    f.upsert(slice('ns3', 'svc3', [{ ip: '10.180.0.3', nodeName: NODE }, { ip: '10.180.0.9', nodeName: NODE }]));
    const { scripts, raw } = await f.sync();
    expect(scripts).toHaveLength(1);
    expect(raw[0]).not.toMatch(/^(add rule|add element|delete) /m);
    expect(f.table()!.chains.has('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(true);
    f.runner.reset();
    await f.ctx.clock.advanceAsync(1100);
    await f.backend.stop();
    expect(f.runner.stdinsTo('nft').join('')).toContain('delete chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n');
    expect(f.table()!.chains.has('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(false);
  });

  it('brings a flushed chain back when its endpoint returns before the deletion', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(slice('ns1', 'svc1', []));
    await f.sync();
    f.upsert(slice('ns1', 'svc1', ['10.180.0.1']));
    await f.sync();
    await f.ctx.clock.advanceAsync(2000);
    await f.backend.stop();
    expect(f.modelChains()['service-ULMVA6XW-ns1/svc1/tcp/p80']).toEqual(['meta l4proto tcp dnat to 10.180.0.1:80']);
    expect(f.elements('service-ips')).toContain('172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80');
  });

  it('deletes a service: elements, chains and affinity sets', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.remove(service('ns5', 'svc5'));
    f.remove(slice('ns5', 'svc5', []));
    const text = (await f.sync()).scripts.join('');
    expect(text).toContain('delete set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80\n');
    expect(text.indexOf('flush chain ip kube-proxy endpoint-GTK6MW7G')).toBeLessThan(text.indexOf('delete set'));
    expect(f.elements('firewall-ips')).toEqual([]);
    expect(f.elements('cluster-ips')).not.toContain('172.30.0.45');
    await f.ctx.clock.advanceAsync(1100);
    await f.backend.stop();
    expect([...f.table()!.chains.keys()].some((c) => c.includes('ns5/svc5'))).toBe(false);
  });

  it('a partial sync that adds, deletes and changes service ports at once ends where a full sync of the same state does', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    // One service port deleted with its affinity sets, one without endpoints deleted, one added, one changed.
    const change = (x: typeof f) => {
      x.remove(service('ns6', 'svc6'));
      x.remove(affinityLoadBalancer(10800));
      x.upsert(service('ns7', 'svc7', { clusterIP: '172.30.0.47', ports: [svcPort('p80', 80)] }));
      x.upsert(slice('ns7', 'svc7', ['10.180.0.7']));
      x.upsert(slice('ns1', 'svc1', [{ ip: '10.180.0.1', nodeName: NODE }, '10.180.0.9']));
    };
    change(f);
    const partial = await f.sync();
    expect(partial.full).toBe(false);
    await f.ctx.clock.advanceAsync(1100); // the stale chains' deletion
    const after = picture(f.model);
    const held = (await f.backend.inspect()) as { chains: Record<string, string[]>; containers: Record<string, string[]> };
    expect(held.chains).toEqual(f.modelChains());
    expect(held.containers['map service-ips']).toEqual(f.elements('service-ips'));
    expect(Object.keys(held.chains).filter((c) => c.includes('svc5') || c.includes('svc6'))).toEqual([]);
    expect(held.containers['set affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80']).toBeUndefined();

    // A fresh backend, one full sync of the same state into an empty table.
    const g = await fixture();
    overallWorld(g);
    change(g);
    expect((await g.sync()).full).toBe(true);
    expect(after).toEqual(picture(g.model));
    expect(held.chains).toEqual((((await g.backend.inspect()) as { chains: unknown }).chains));
  });

  it('re-creates affinity sets whose timeout changed', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.upsert(affinityLoadBalancer(60));
    const text = (await f.sync()).scripts.join('');
    expect(text).toContain('delete set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80\n');
    expect(f.table()!.containers.get('affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80')!.spec).toContain('timeout 60s');
  });

  it('goes back to a full sync after a failed transaction, finding leftovers in the kernel', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.runner.once('nft', { code: 1, stderr: 'Error: Could not process rule: No buffer space available' }, (a) => a[0] === '-f');
    f.upsert(slice('ns1', 'svc1', ['10.180.0.1', '10.180.0.7']));
    const { state, changes } = f.tracker.checkpoint();
    const failed = await f.backend.sync(state, changes);
    expect(failed.ok).toBe(false);
    expect(await f.ctx.metrics.getSingleMetricAsString('kubeproxy_sync_proxy_rules_nftables_sync_failures_total')).toContain('} 1');

    f.runner.on('nft', () => ({ stdout: JSON.stringify({ nftables: [{ chain: { family: 'ip', table: 'kube-proxy', name: 'service-AAAAAAAA-old/gone/tcp/p80' } }] }) }), (a) => a.join(' ') === '-t -j list chains ip');
    f.model.apply('add chain ip kube-proxy service-AAAAAAAA-old/gone/tcp/p80\n');
    f.runner.reset();
    const retry = await f.backend.sync(state, emptyChangeSet());
    expect(retry.ok).toBe(true);
    expect(retry.full).toBe(true);
    const text = f.runner.stdinsTo('nft').join('');
    expect(text).toContain('flush chain ip kube-proxy service-AAAAAAAA-old/gone/tcp/p80\n');
    expect(f.modelChains()['service-ULMVA6XW-ns1/svc1/tcp/p80']![0]).toContain('numgen random mod 2');
  });
});

describe('nftables backend: a restarted daemon', () => {
  /** A second backend over the same (model) kernel, as after a restart of the daemon. */
  async function restarted(f: Awaited<ReturnType<typeof fixture>>, options: Partial<NftablesBackendOptions> = {}) {
    const backend = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8' }), ...options });
    await backend.start(f.ctx);
    return backend;
  }

  /** Every service-ips element leads to a chain that DNATs (directly, through its endpoint map or its endpoint chains). */
  function servesEveryService(model: NftScriptModel): string[] {
    const table = model.table('ip', 'kube-proxy')!;
    const t = dataPlaneView(table);
    const dnatsTo = (r: string) => / dnat (ip )?to /.test(r) && !r.includes('(missing)');
    const dnats = (chain: string, depth = 0): boolean =>
      depth < 4 && (t.chains.get(chain) ?? []).some((r) => dnatsTo(r) || [...r.matchAll(/goto (\S+)/g)].some(([, c]) => dnats(c!, depth + 1)));
    return [...table.containers.get('service-ips')!.elements].filter(([, e]) => !dnats(/goto (\S+)/.exec(e.value ?? '')![1]!)).map(([k]) => k);
  }

  it('reconciles from the names in the kernel: rewrites in place, traffic served after every transaction', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    const before = structuredClone(picture(f.model));
    const { state } = f.tracker.checkpoint();
    const backend = await restarted(f, { servicesPerTransaction: 2 });
    const checked: string[][] = [];
    f.runner.reset();
    f.runner.on(
      'nft',
      (_args, stdin) => {
        f.model.apply(stdin ?? '');
        checked.push(servesEveryService(f.model));
        return { code: 0 };
      },
      (args) => args[0] === '-f',
    );
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.ok).toBe(true);
    expect(r.full).toBe(true);
    // names only: neither the rules nor the elements are read back
    expect(f.runner.callsTo('nft').filter((c) => c.args[0] !== '-f').map((c) => c.args.join(' '))).toEqual(['-t -j list chains ip', '-t -j list sets ip', '-t -j list maps ip']);
    expect(checked.length).toBeGreaterThan(3);
    expect(checked.flat()).toEqual([]);
    expect(picture(f.model)).toEqual(before);
    // the endpoints are numbered in a map of their own; the earlier process's map goes a second later
    const endpointMaps = () => [...f.table()!.containers.keys()].filter((n) => n.startsWith('endpoints-'));
    expect(endpointMaps()).toEqual(['endpoints-0', 'endpoints-1']);
    await f.ctx.clock.advanceAsync(1100);
    expect(endpointMaps()).toEqual(['endpoints-1']);
    // and it goes on with partial syncs
    f.upsert(slice('ns1', 'svc1', ['10.180.0.1', '10.180.0.8']));
    const next = f.tracker.checkpoint();
    expect((await backend.sync(next.state, next.changes)).full).toBe(false);
    await backend.stop();
  });

  it('keeps the affinity sets it finds with their timeout, and their clients', async () => {
    const f = await fixture();
    f.upsert(affinityLoadBalancer(10800));
    f.upsert(slice('ns5', 'svc5', ['10.180.0.3', '10.180.0.4']));
    await f.sync();
    const { state } = f.tracker.checkpoint();
    const backend = await restarted(f);
    f.runner.reset();
    expect((await backend.sync(state, emptyChangeSet())).ok).toBe(true);
    expect(f.runner.stdinsTo('nft').join('')).not.toMatch(/delete set .*affinity-/);
    await backend.stop();
  });

  it('re-creates an affinity set whose timeout changed even when a chain the service no longer uses refers to it', async () => {
    const f = await fixture();
    const svc = (policy: 'Local' | 'Cluster', timeoutSeconds: number) =>
      service('ns1', 'sticky', {
        type: 'NodePort',
        externalTrafficPolicy: policy,
        clusterIP: '172.30.0.50',
        ports: [svcPort('p80', 80, { nodePort: 3050 })],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds } },
      });
    f.upsert(svc('Local', 600));
    f.upsert(slice('ns1', 'sticky', [{ ip: '10.180.0.1', nodeName: NODE }, { ip: '10.180.0.2', nodeName: 'other' }]));
    await f.sync();
    const localChains = () => Object.keys(f.modelChains()).filter((c) => c.startsWith('local-'));
    expect(localChains()).toHaveLength(1);
    // While no daemon runs, the Service's policy goes Local -> Cluster and its affinity timeout
    // changes: the local- chain, which refers to the local endpoint's affinity set, is stale for
    // the next daemon, which re-creates that set with the new timeout.
    f.upsert(svc('Cluster', 900));
    const { state } = f.tracker.checkpoint();
    const backend = await restarted(f);
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.ok, r.error?.message).toBe(true);
    expect(localChains()).toEqual([]);
    expect(servesEveryService(f.model)).toEqual([]);
    await backend.stop();
  });

  it('deletes the maps of an earlier numbering one by one when one of them cannot go', async () => {
    const f = await fixture();
    f.upsert(service('ns1', 'web', { clusterIP: '172.30.0.60', ports: [svcPort('p80', 80)] }));
    f.upsert(slice('ns1', 'web', ['10.180.0.1', '10.180.0.2']));
    f.upsert(service('ns1', 'dns', { clusterIP: '172.30.0.61', ports: [{ name: 'p80', port: 53, protocol: 'UDP' }] }));
    f.upsert(slice('ns1', 'dns', ['10.180.0.3', '10.180.0.4'], 53, 'UDP'));
    await f.sync();
    const endpointMaps = () => [...f.table()!.containers.keys()].filter((n) => n.startsWith('endpoints-')).sort();
    expect(endpointMaps()).toEqual(['endpoints-0', 'endpoints-1']); // one a protocol
    const { state } = f.tracker.checkpoint();
    const backend = await restarted(f);
    expect((await backend.sync(state, emptyChangeSet())).ok).toBe(true);
    expect(endpointMaps()).toEqual(['endpoints-0', 'endpoints-1', 'endpoints-2', 'endpoints-3']);
    // endpoints-0 will not go (as if something still referred to it)
    f.runner.on(
      'nft',
      (_args, stdin) => {
        if ((stdin ?? '').includes('delete map ip kube-proxy endpoints-0')) return { code: 1, stderr: 'Error: Device or resource busy' };
        f.model.apply(stdin ?? '');
        return { code: 0 };
      },
      (args) => args[0] === '-f',
    );
    await f.ctx.clock.advanceAsync(1100);
    expect(endpointMaps()).toEqual(['endpoints-0', 'endpoints-2', 'endpoints-3']);
    expect(f.ctx.logger.entries.some((e) => e.msg === 'deleting old nftables endpoint maps failed')).toBe(true);
    await backend.stop();
  });

  it('takes over a table in upstream’s layout: endpoint chains flushed, then deleted', async () => {
    const f = await fixture();
    f.upsert(service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [svcPort('p80', 80)] }));
    f.upsert(slice('ns1', 'svc1', ['10.180.0.1']));
    const { state } = f.tracker.checkpoint();
    // what upstream's proxier (or an earlier version) left: a service chain through an endpoint chain
    const ep = 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80';
    const svc = 'service-ULMVA6XW-ns1/svc1/tcp/p80';
    f.model.apply(
      [
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        'add chain ip kube-proxy mark-for-masquerade',
        `add chain ip kube-proxy ${ep}`,
        `add rule ip kube-proxy ${ep} ip saddr 10.180.0.1 jump mark-for-masquerade`,
        `add rule ip kube-proxy ${ep} meta l4proto tcp dnat to 10.180.0.1:80`,
        `add chain ip kube-proxy ${svc}`,
        `add rule ip kube-proxy ${svc} numgen random mod 1 vmap { 0 : goto ${ep} }`,
        'add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        `add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto ${svc} }`,
        '',
      ].join('\n'),
    );
    const backend = await restarted(f);
    f.runner.reset();
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.ok).toBe(true);
    expect(servesEveryService(f.model)).toEqual([]);
    expect(f.modelChains()[svc]).toEqual(['meta l4proto tcp dnat to 10.180.0.1:80']);
    expect(f.table()!.chains.get(ep)).toEqual([]);
    expect(f.table()!.chains.get('mark-for-masquerade')).toEqual([]);
    await f.ctx.clock.advanceAsync(1100);
    await backend.stop();
    expect(f.table()!.chains.has(ep)).toBe(false);
    expect(f.table()!.chains.has('mark-for-masquerade')).toBe(false);
  });

  it('deletes the base chains and the hairpin set an earlier version created', async () => {
    const f = await fixture();
    f.upsert(service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [svcPort('p80', 80)] }));
    f.upsert(slice('ns1', 'svc1', [{ ip: '10.180.0.1', nodeName: NODE }]));
    const { state } = f.tracker.checkpoint();
    f.model.apply(
      [
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        'add chain ip kube-proxy firewall-check',
        'add chain ip kube-proxy cluster-ips-check',
        'add chain ip kube-proxy mark-for-masquerade',
        'add chain ip kube-proxy masquerading',
        'add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }',
        'add rule ip kube-proxy filter-prerouting ct state new jump firewall-check',
        'add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }',
        'add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check',
        'add set ip kube-proxy hairpin-endpoints { type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: connections from an endpoint to itself via a service" ; }',
        'add element ip kube-proxy hairpin-endpoints { 10.180.0.1 . 10.180.0.1 }',
        'add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade',
        '',
      ].join('\n'),
    );
    const backend = await restarted(f);
    expect((await backend.sync(state, emptyChangeSet())).ok).toBe(true);
    const t = f.table()!;
    expect(['filter-prerouting', 'filter-output-post-dnat'].filter((c) => t.chains.has(c))).toEqual([]);
    expect(t.containers.has('hairpin-endpoints')).toBe(false);
    expect(['filter-prerouting-pre-dnat', 'filter-output-pre-dnat', 'filter-input', 'filter-forward', 'filter-output'].every((c) => t.chains.has(c))).toBe(true);
    expect(f.elements('hairpin-connections')).toEqual(['10.180.0.1 . 10.180.0.1 . tcp . 80']);
    await backend.stop();
  });
});

describe('nftables backend: bounded transactions', () => {
  it('says how many Services are written while a long sync runs', async () => {
    const f = await fixture({ backend: { servicesPerTransaction: 25 } });
    for (let i = 0; i < 100; i++) {
      f.upsert(service('ns', `s${i}`, { clusterIP: `172.30.0.${i + 1}`, ports: [svcPort('p80', 80)] }));
      f.upsert(slice('ns', `s${i}`, [`10.1.0.${i + 1}`]));
    }
    // each transaction takes the kernel 2 s
    f.runner.on(
      'nft',
      (_args, stdin) => {
        f.model.apply(stdin ?? '');
        f.ctx.clock.advance(2000);
        return { code: 0 };
      },
      (args) => args[0] === '-f',
    );
    await f.sync();
    const lines = f.ctx.logger.entries.filter((e) => e.msg === 'Sync in progress: Services written');
    expect(lines.map((e) => [e.fields.written, e.fields.of])).toEqual([[50, 100]]);
  });

  it('splits a large full sync, chains before the map elements that point at them', async () => {
    const f = await fixture({ backend: { servicesPerTransaction: 50, linesPerTransaction: 2000 } });
    for (let i = 0; i < 120; i++) {
      f.upsert(service('ns', `s${i}`, { clusterIP: `172.30.${i >> 8}.${i & 255}`, ports: [svcPort('p80', 80)] }));
      f.upsert(slice('ns', `s${i}`, Array.from({ length: 10 }, (_, j) => ({ ip: `10.1.${i % 200}.${j + 1}`, nodeName: NODE }))));
    }
    const { scripts } = await f.sync();
    expect(scripts.length).toBeGreaterThanOrEqual(4); // setup, 3 chain chunks, elements
    // commands and rules: a chain's `add chain` repeated for its block of rules is not one more
    const commands = (script: string) => {
      const seen = new Set<string>();
      return script.trim().split('\n').filter((l) => !(l.startsWith('add chain') && seen.has(l)) && seen.add(l)).length;
    };
    for (const script of scripts) expect(commands(script)).toBeLessThanOrEqual(2000);
    expect(scripts.findIndex((script) => script.includes('add element ip kube-proxy service-ips'))).toBe(scripts.length - 1);
    expect(f.elements('service-ips')).toHaveLength(120);
    const serviceChains = Object.entries(f.modelChains()).filter(([c]) => c.startsWith('service-') && c.includes('/'));
    expect(serviceChains).toHaveLength(120);
    for (const [, rules] of serviceChains) expect(rules.join('\n').match(/ : 10\.1\.\d+\.\d+ \. 80/g)).toHaveLength(10);
    // each chunk writes the endpoints its chains DNAT to: the transaction of a service's chain holds its map elements
    for (const script of scripts) {
      for (const [, offset, map] of [...script.matchAll(/numgen random mod 10 offset (\d+) map @(\S+)/g)]) {
        expect(script).toMatch(new RegExp(`add element ip kube-proxy ${map} \\{[^}]*\\b${offset} : `));
      }
    }
    expect(f.elements('hairpin-connections')).toHaveLength(1200);
  });



  it('passes a timeout to every nft call', async () => {
    const f = await fixture({ backend: { nftTimeoutMs: 1234 } });
    overallWorld(f);
    await f.sync();
    await f.backend.cleanup(f.ctx);
    for (const call of f.runner.callsTo('nft')) expect(call.options?.timeoutMs).toBe(1234);
  });
});

describe('nftables backend: conntrack and cleanup', () => {
  it('flushes conntrack entries of a removed UDP endpoint', async () => {
    const f = await fixture();
    f.upsert(service('ns1', 'dns', { clusterIP: '172.30.0.10', ports: [{ name: 'p80', port: 53, protocol: 'UDP' }] }));
    f.upsert(slice('ns1', 'dns', ['10.180.0.1', '10.180.0.2'], 53, 'UDP'));
    await f.sync();
    f.upsert(slice('ns1', 'dns', ['10.180.0.1'], 53, 'UDP'));
    await f.sync();
    const args = f.runner.callsTo('conntrack').map((c) => c.args.join(' '));
    expect(args).toContain('-D -f ipv4 -p udp --orig-dst 172.30.0.10 --orig-port-dst 53 --reply-src 10.180.0.2 --reply-port-src 53');
  });

  it('cleanup deletes our table only, and tolerates its absence', async () => {
    const f = await fixture();
    overallWorld(f);
    await f.sync();
    f.model.apply('add table ip other\nadd chain ip other keep\n');
    f.runner.reset();
    await f.backend.cleanup(f.ctx);
    expect(f.runner.callsTo('nft').map((c) => c.args.join(' '))).toEqual(['delete table ip kube-proxy']);
    f.runner.once('nft', { code: 1, stderr: 'Error: Could not process rule: No such file or directory' });
    await expect(f.backend.cleanup(f.ctx)).resolves.toBeUndefined();
    expect(await f.backend.inspect()).toEqual({ family: 'ip', table: null });
  });

  it('reports a sync before start as a failure instead of throwing', async () => {
    const backend = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig() });
    const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
    const { state, changes } = tracker.checkpoint();
    const r = await backend.sync(state, changes);
    expect(r.ok).toBe(false);
  });
});

describe('nftables backend: IPv6', () => {
  it('writes an ip6 table, with dotted endpoint names for affinity', async () => {
    const runner = createRecordingRunner();
    const ctx = testContext({ runner, node: nodeInfo({ name: NODE, ipFamily: 'IPv6', addresses: ['fd00::2'] }) });
    const backend = new NftablesBackend({ ipFamily: 'IPv6', config: proxyConfig({ clusterCIDR: 'fd00:10::/64' }) });
    await backend.start(ctx);
    const tracker = new ProxyStateTracker({ ipFamily: 'IPv6', nodeName: NODE });
    tracker.onServiceAdd(service('ns1', 'svc1', { clusterIP: 'fd00:172:30::41', ipFamily: 'IPv6', ports: [svcPort('p80', 80)], sessionAffinity: 'ClientIP' }));
    tracker.onEndpointSliceAdd(endpointSlice('ns1', 'svc1', { name: 'svc1-1', endpoints: [{ ip: 'fd00:10::1', nodeName: NODE }], ports: [{ name: 'p80', port: 80 }] }));
    tracker.onServiceAdd(service('ns1', 'svc2', { clusterIP: 'fd00:172:30::42', ipFamily: 'IPv6', ports: [svcPort('p80', 80)] }));
    tracker.onEndpointSliceAdd(endpointSlice('ns1', 'svc2', { name: 'svc2-1', endpoints: ['fd00:10::2', 'fd00:10::3'], ports: [{ name: 'p80', port: 80 }] }));
    const { state, changes } = tracker.checkpoint();
    const r = await backend.sync(state, changes);
    expect(r.ok).toBe(true);
    const text = runner.stdinsTo('nft').map((s) => expandScript(s).join('\n')).join('\n');
    const model = new NftScriptModel();
    for (const s of runner.stdinsTo('nft')) model.apply(s);
    expect(text).toContain('add table ip6 kube-proxy');
    expect(text).toContain('ip6 daddr != ::1 meta l4proto . th dport vmap @no-endpoint-nodeports');
    expect(text).toMatch(/endpoint-[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80__fd00\.10\.\.1\/80 meta l4proto tcp dnat to \[fd00:10::1\]:80/);
    expect(text).toContain('add rule ip6 kube-proxy services ip6 daddr @cluster-ips ip6 saddr != fd00:10::/64 mark set mark or 0x004000 comment "masquerade clusterIP traffic from outside cluster"');
    expect(text).toContain('add set ip6 kube-proxy hairpin-connections { type ipv6_addr . ipv6_addr . inet_proto . inet_service ; comment "service hairpin connections" ; }');
    expect(text).toContain('add element ip6 kube-proxy hairpin-connections { fd00:10::1 . fd00:10::1 . tcp . 80 }');
    // two endpoints: numbered in an ip6 endpoint map
    expect(text).toContain('add map ip6 kube-proxy endpoints-0 { typeof numgen random mod 1 : ip6 daddr . tcp dport ; comment "service endpoints picked by numgen" ; }');
    expect(text).toContain('add element ip6 kube-proxy endpoints-0 { 0 : fd00:10::2 . 80, 1 : fd00:10::3 . 80 }');
    expect(text).toMatch(/add rule ip6 kube-proxy service-[A-Z2-7]{8}-ns1\/svc2\/tcp\/p80 meta l4proto tcp dnat ip6 to numgen random mod 2 offset 0 map @endpoints-0/);
  });
});
