import { describe, expect, it } from 'vitest';
import { emptyChangeSet, type ProxyConfig, type ProxyState } from '@kube-proxy-ts/core';
import { endpointSlice, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { ipvsBackendFactory } from './backend.js';
import { createFakeIpvsNode, type FakeIpvsNode } from './test-support/fake-ipvs-node.js';
import { proxyState, stateTracker } from './test-support/state.js';

type DeepPartialConfig = Parameters<typeof proxyConfig>[0];

async function setup(config?: DeepPartialConfig, fake: FakeIpvsNode = createFakeIpvsNode()) {
  const ctx = testContext({ runner: fake.runner, node: { name: 'node1', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] } });
  const backend = ipvsBackendFactory({ ipFamily: 'IPv4', config: proxyConfig(config) as ProxyConfig });
  await backend.start(ctx);
  const sync = async (state: ProxyState) => {
    fake.runner.reset();
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.error?.message).toBeUndefined();
    return r;
  };
  /** The ipvsadm --restore lines of the last sync. */
  const ipvsLines = () => fake.runner.stdinsTo('ipvsadm').join('').split('\n').filter(Boolean);
  return { fake, ctx, backend, sync, ipvsLines };
}

const web = (opts: Parameters<typeof service>[2] = {}) => service('ns1', 'web', { clusterIP: '10.96.0.10', ...(typeof opts === 'object' ? opts : {}) }, typeof opts === 'function' ? opts : undefined);
const webEndpoints = (ips: string[], mutate?: Parameters<typeof endpointSlice>[3]) => endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ips }, mutate);

describe('ipvs backend: first sync', () => {
  it('creates a virtual service per ClusterIP port with masqueraded real servers of weight 1', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11', '10.244.2.12'])] }));
    expect(ipvsLines()).toEqual([
      '-A -t 10.96.0.10:80 -s rr',
      '-a -t 10.96.0.10:80 -r 10.244.1.11:80 -m -w 1',
      '-a -t 10.96.0.10:80 -r 10.244.2.12:80 -m -w 1',
    ]);
    expect(fake.links.get('kube-ipvs0')).toEqual([{ family: 'inet', local: '10.96.0.10' }]);
    expect([...fake.ipsets.get('KUBE-CLUSTER-IP')!.entries]).toEqual(['10.96.0.10,tcp:80']);
    expect([...fake.ipsets.get('KUBE-IPVS-IPS')!.entries]).toEqual(['10.96.0.10']);
    expect([...fake.ipsets.get('KUBE-LOOP-BACK')!.entries]).toEqual([]); // no endpoint runs on node1
    const nat = fake.tables.get('nat')!;
    expect(nat.get('OUTPUT')).toEqual(['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']);
    expect(nat.get('KUBE-SERVICES')).toContain('-m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT');
    expect(nat.get('KUBE-MARK-MASQ')).toEqual(['-j MARK --or-mark 0x004000']);
    expect(fake.tables.get('filter')!.get('KUBE-IPVS-FILTER')!.at(-1)).toBe('-m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT');
  });

  it('changes nothing on the node at start; writes upstream sysctls and IPVS timeouts before the first sync', async () => {
    const { fake, sync } = await setup({ ipvs: { strictARP: true, tcpTimeout: 900_000, udpTimeout: 300_000 } });
    expect(fake.runner.callsTo('sysctl')).toEqual([]);
    expect(fake.commandLines().filter((l) => l.startsWith('ipvsadm') || l.startsWith('ip '))).toEqual([]);
    await sync(proxyState({ services: [web()] }));
    expect(Object.fromEntries(fake.sysctls)).toEqual({
      'net.ipv4.vs.conntrack': '1',
      'net.ipv4.vs.expire_nodest_conn': '1',
      'net.ipv4.vs.expire_quiescent_template': '1',
      'net.ipv4.ip_forward': '1',
      'net.ipv4.conf.all.arp_ignore': '1',
      'net.ipv4.conf.all.arp_announce': '2',
    });
    expect(fake.ipvsTimeouts).toEqual(['900', '0', '300']);
    // The net.ipv4.vs sysctls exist once ip_vs is loaded, which the first listing does.
    const lines = fake.commandLines();
    expect(lines.indexOf('ipvsadm -Ln')).toBeLessThan(lines.findIndex((l) => l.startsWith('sysctl')));
    await sync(proxyState({ services: [web()] }));
    expect(fake.runner.callsTo('sysctl')).toEqual([]);
  });

  it('leaves ARP sysctls and timeouts alone by default', async () => {
    const { fake, sync } = await setup();
    await sync(proxyState({ services: [web()] }));
    expect(fake.sysctls.has('net.ipv4.conf.all.arp_ignore')).toBe(false);
    expect(fake.ipvsTimeouts).toBeUndefined();
  });

  it('uses the configured scheduler, with the port hashed in for mh, and falls back to rr for an unknown one', async () => {
    const mh = await setup({ ipvs: { scheduler: 'mh' } });
    await mh.sync(proxyState({ services: [web()] }));
    expect(mh.ipvsLines()).toEqual(['-A -t 10.96.0.10:80 -s mh -b mh-port']);
    const bad = await setup({ ipvs: { scheduler: 'bogus' } });
    await bad.sync(proxyState({ services: [web()] }));
    expect(bad.ipvsLines()).toEqual(['-A -t 10.96.0.10:80 -s rr']);
    expect(JSON.stringify(bad.ctx.logger.at('warn'))).toMatch(/unknown IPVS scheduler \\"bogus\\"/);
  });

  it('turns ClientIP affinity into persistence with the service timeout', async () => {
    const { sync, ipvsLines } = await setup();
    await sync(proxyState({ services: [web((s) => ((s.spec!.sessionAffinity = 'ClientIP'), (s.spec!.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } })))] }));
    expect(ipvsLines()).toEqual(['-A -t 10.96.0.10:80 -s rr -p 60']);
  });

  it('programs NodePorts on node addresses (not loopback, not bound to kube-ipvs0) and the node-port ipsets', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(proxyState({ services: [web({ type: 'NodePort', ports: [{ name: 'p80', port: 80, nodePort: 30080 }] })], slices: [webEndpoints(['10.244.1.11'])] }));
    expect(ipvsLines()).toEqual([
      '-A -t 10.96.0.10:80 -s rr',
      '-a -t 10.96.0.10:80 -r 10.244.1.11:80 -m -w 1',
      '-A -t 192.168.50.1:30080 -s rr',
      '-a -t 192.168.50.1:30080 -r 10.244.1.11:80 -m -w 1',
    ]);
    expect(fake.links.get('kube-ipvs0')!.map((a) => a.local)).toEqual(['10.96.0.10']);
    expect([...fake.ipsets.get('KUBE-NODE-PORT-TCP')!.entries]).toEqual(['30080']);
    expect(fake.tables.get('nat')!.get('KUBE-NODE-PORT')).toEqual([
      '-p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ',
    ]);
  });

  it('binds externalIPs to kube-ipvs0 unless another interface already holds them', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(proxyState({ services: [web({ externalIPs: ['192.168.99.11', '192.168.50.1'] })] }));
    expect(ipvsLines()).toEqual(['-A -t 10.96.0.10:80 -s rr', '-A -t 192.168.99.11:80 -s rr', '-A -t 192.168.50.1:80 -s rr']);
    expect(fake.links.get('kube-ipvs0')!.map((a) => a.local).sort()).toEqual(['10.96.0.10', '192.168.99.11']);
    expect(fake.links.get('eth0')!.map((a) => a.local)).toEqual(['192.168.50.1']);
    expect([...fake.ipsets.get('KUBE-EXTERNAL-IP')!.entries].sort()).toEqual(['192.168.50.1,tcp:80', '192.168.99.11,tcp:80']);
  });

  it('sends external traffic with externalTrafficPolicy Local only to local endpoints', async () => {
    const { fake, sync, ipvsLines } = await setup();
    const slice = endpointSlice('ns1', 'web', {
      name: 'web-1',
      endpoints: [{ ip: '10.244.1.11', nodeName: 'node1' }, { ip: '10.244.2.12', nodeName: 'node2' }],
    });
    await sync(proxyState({ services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'p80', port: 80, nodePort: 30080 }] })], slices: [slice] }));
    expect(ipvsLines().filter((l) => l.includes('192.168.50.1:30080'))).toEqual([
      '-A -t 192.168.50.1:30080 -s rr',
      '-a -t 192.168.50.1:30080 -r 10.244.1.11:80 -m -w 1',
    ]);
    expect(ipvsLines().filter((l) => l.startsWith('-a -t 10.96.0.10:80'))).toHaveLength(2);
    expect([...fake.ipsets.get('KUBE-NODE-PORT-LOCAL-TCP')!.entries]).toEqual(['30080']);
    expect([...fake.ipsets.get('KUBE-LOOP-BACK')!.entries]).toEqual(['10.244.1.11,tcp:80,10.244.1.11']);
  });

  it('fills the load-balancer sets and blocks the node from a source-ranged LB that excludes it', async () => {
    const { fake, sync } = await setup();
    const lb = web({ type: 'LoadBalancer', loadBalancerIngress: ['203.0.113.7'], loadBalancerSourceRanges: ['198.51.100.0/24'], ports: [{ name: 'p80', port: 80, nodePort: 30080 }] });
    await sync(proxyState({ services: [lb] }));
    expect([...fake.ipsets.get('KUBE-LOAD-BALANCER-FW')!.entries]).toEqual(['203.0.113.7,tcp:80']);
    expect([...fake.ipsets.get('KUBE-LOAD-BALANCER-SOURCE-CIDR')!.entries]).toEqual(['203.0.113.7,tcp:80,198.51.100.0/24']);
    expect(fake.tables.get('filter')!.get('KUBE-IPVS-OUT-FILTER')).toEqual(['-s 203.0.113.7 -m ipvs --vaddr 203.0.113.7 --vproto tcp --vport 80 -j DROP']);
    expect(fake.tables.get('filter')!.get('KUBE-SOURCE-RANGES-FIREWALL')!.at(-1)).toBe('-j DROP');
  });

  it('keeps a virtual service without real servers when there are no endpoints', async () => {
    const { fake, sync } = await setup();
    await sync(proxyState({ services: [web()] }));
    expect(fake.services.get('TCP/10.96.0.10:80')!.realServers.size).toBe(0);
  });
});

describe('ipvs backend: sync by difference', () => {
  const base = () => proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11', '10.244.2.12'])] });

  it('sends nothing to IPVS, ipset or the dummy interface when nothing changed', async () => {
    const { fake, sync } = await setup();
    await sync(base());
    await sync(base());
    expect(fake.runner.callsTo('ipvsadm').filter((c) => c.args[0] === '--restore')).toEqual([]);
    expect(fake.runner.callsTo('ipset').filter((c) => c.args[0] === 'restore')).toEqual([]);
    expect(fake.commandLines().filter((l) => l.startsWith('ip -force'))).toEqual([]);
    expect(fake.runner.callsTo('iptables-nft-restore')).toEqual([]);
    // One read of each per sync, never one process per service.
    expect(fake.commandLines().filter((l) => l === 'ipvsadm -Ln')).toHaveLength(1);
  });

  it('rewrites the iptables layer when the kernel lost part of it', async () => {
    const { fake, sync } = await setup();
    await sync(base());
    fake.tables.get('nat')!.get('KUBE-MARK-MASQ')!.length = 0;
    await sync(base());
    expect(fake.runner.callsTo('iptables-nft-restore')).toHaveLength(1);
    expect(fake.tables.get('nat')!.get('KUBE-MARK-MASQ')).toEqual(['-j MARK --or-mark 0x004000']);
    fake.tables.get('filter')!.get('INPUT')!.length = 0;
    await sync(base());
    expect(fake.tables.get('filter')!.get('INPUT')).toHaveLength(3);
  });

  it('adds only the new real server', async () => {
    const { sync, ipvsLines } = await setup();
    await sync(base());
    await sync(proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11', '10.244.2.12', '10.244.3.13'])] }));
    expect(ipvsLines()).toEqual(['-a -t 10.96.0.10:80 -r 10.244.3.13:80 -m -w 1']);
  });

  it('deletes an idle removed real server at once', async () => {
    const { sync, ipvsLines } = await setup();
    await sync(base());
    await sync(proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11'])] }));
    expect(ipvsLines()).toEqual(['-d -t 10.96.0.10:80 -r 10.244.2.12:80']);
  });

  it('drains a busy TCP real server at weight 0, deletes it once idle', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(base());
    fake.setConnections('TCP/10.96.0.10:80', '10.244.2.12:80', 1, 0);
    const one = proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11'])] });
    await sync(one);
    expect(ipvsLines()).toEqual(['-e -t 10.96.0.10:80 -r 10.244.2.12:80 -m -w 0']);
    await sync(one);
    expect(ipvsLines()).toEqual([]); // still busy: nothing to do
    fake.setConnections('TCP/10.96.0.10:80', '10.244.2.12:80', 0, 0);
    await sync(one);
    expect(ipvsLines()).toEqual(['-d -t 10.96.0.10:80 -r 10.244.2.12:80']);
  });

  it('brings a draining real server back fresh when it is re-added', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(base());
    fake.setConnections('TCP/10.96.0.10:80', '10.244.2.12:80', 1, 0);
    await sync(proxyState({ services: [web()], slices: [webEndpoints(['10.244.1.11'])] }));
    await sync(base());
    expect(ipvsLines()).toEqual(['-d -t 10.96.0.10:80 -r 10.244.2.12:80', '-a -t 10.96.0.10:80 -r 10.244.2.12:80 -m -w 1']);
    expect(fake.services.get('TCP/10.96.0.10:80')!.realServers.get('10.244.2.12:80')!.weight).toBe(1);
  });

  it('removes a busy UDP real server at once (no graceful termination for UDP)', async () => {
    const { fake, sync, ipvsLines } = await setup();
    const dns = (ips: string[]) =>
      proxyState({
        services: [service('kube-system', 'dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })],
        slices: [endpointSlice('kube-system', 'dns', { name: 'dns-1', endpoints: ips, ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })],
      });
    await sync(dns(['10.244.1.11', '10.244.2.12']));
    fake.setConnections('UDP/10.96.0.53:53', '10.244.2.12:53', 0, 5);
    await sync(dns(['10.244.1.11']));
    expect(ipvsLines()).toEqual(['-d -u 10.96.0.53:53 -r 10.244.2.12:53']);
  });

  it('deletes the conntrack entries of a newly served UDP service, a replaced UDP endpoint and a deleted UDP ClusterIP after the sync', async () => {
    const { fake, backend } = await setup();
    const dnsService = service('kube-system', 'dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    const dnsSlice = (ip: string) => endpointSlice('kube-system', 'dns', { name: 'dns-1', endpoints: [ip], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    const tracker = stateTracker({ services: [dnsService], slices: [dnsSlice('10.244.1.11')] });
    const syncNext = async () => {
      const { state, changes } = tracker.checkpoint();
      fake.runner.reset();
      const r = await backend.sync(state, changes);
      expect(r.error?.message).toBeUndefined();
      return fake.commandLines();
    };
    // The service just got an endpoint: entries made while it had none were never DNATed.
    expect((await syncNext()).filter((l) => l.startsWith('conntrack'))).toEqual(['conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --reply-src 10.96.0.53']);

    tracker.onEndpointSliceUpdate(dnsSlice('10.244.1.11'), dnsSlice('10.244.2.12'));
    const replaced = await syncNext();
    expect(replaced.filter((l) => l.startsWith('conntrack'))).toEqual([
      'conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --reply-src 10.244.1.11 --reply-port-src 53',
    ]);
    // Deleted only once no real server is left that the entry could still reach.
    expect(replaced.findIndex((l) => l.startsWith('conntrack'))).toBeGreaterThan(replaced.indexOf('ipvsadm --restore'));

    tracker.onServiceDelete(dnsService);
    expect((await syncNext()).filter((l) => l.startsWith('conntrack'))).toEqual(['conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53']);
  });

  it('leaves conntrack alone when a sync fails; the retried sync deletes the entries', async () => {
    const { fake, backend } = await setup();
    const dnsService = service('kube-system', 'dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    const tracker = stateTracker({ services: [dnsService] });
    await backend.sync(tracker.checkpoint().state, emptyChangeSet());
    tracker.onServiceDelete(dnsService);
    const { state, changes } = tracker.checkpoint();
    fake.runner.once('ipset', { code: 1, stderr: 'ipset v7.17: Error in line 1: Kernel error' }, (a) => a[0] === 'restore');
    fake.runner.reset();
    expect((await backend.sync(state, changes)).ok).toBe(false);
    expect(fake.runner.callsTo('conntrack')).toEqual([]);
    expect((await backend.sync(state, changes)).ok).toBe(true);
    expect(fake.runner.callsTo('conntrack').map((c) => c.args.join(' '))).toEqual(['-D -f ipv4 -p udp --orig-dst 10.96.0.53']);
  });

  it('edits the virtual service in place when affinity changes', async () => {
    const { sync, ipvsLines } = await setup();
    await sync(base());
    await sync(proxyState({ services: [web((s) => (s.spec!.sessionAffinity = 'ClientIP'))], slices: [webEndpoints(['10.244.1.11', '10.244.2.12'])] }));
    expect(ipvsLines()).toEqual(['-E -t 10.96.0.10:80 -s rr -p 10800']);
  });

  it('restores weight 1 on a real server found at another weight (e.g. after a restart)', async () => {
    const { fake, sync, ipvsLines } = await setup();
    await sync(base());
    fake.services.get('TCP/10.96.0.10:80')!.realServers.get('10.244.1.11:80')!.weight = 0;
    await sync(base());
    expect(ipvsLines()).toEqual(['-e -t 10.96.0.10:80 -r 10.244.1.11:80 -m -w 1']);
  });

  it('removes a deleted service: virtual service, address and ipset entries', async () => {
    const { fake, sync, ipvsLines } = await setup();
    const other = service('ns1', 'other', { clusterIP: '10.96.0.11' });
    await sync(proxyState({ services: [web(), other], slices: [webEndpoints(['10.244.1.11'])] }));
    await sync(proxyState({ services: [other] }));
    expect(ipvsLines()).toEqual(['-D -t 10.96.0.10:80']);
    expect(fake.links.get('kube-ipvs0')!.map((a) => a.local)).toEqual(['10.96.0.11']);
    expect([...fake.ipsets.get('KUBE-CLUSTER-IP')!.entries]).toEqual(['10.96.0.11,tcp:80']);
    expect(fake.runner.callsTo('ipset').filter((c) => c.args[0] === 'restore').map((c) => c.stdin)).toEqual(['del KUBE-CLUSTER-IP 10.96.0.10,tcp:80 -exist\ndel KUBE-IPVS-IPS 10.96.0.10 -exist\n']);
  });

  it('recognises its own virtual services after a restart from the kernel ipsets', async () => {
    const fake = createFakeIpvsNode();
    const first = await setup(undefined, fake);
    await first.sync(base());
    const second = await setup(undefined, fake);
    await second.sync(proxyState({ services: [] }));
    expect(second.ipvsLines()).toEqual(['-D -t 10.96.0.10:80']);
  });

  it('reports a failed batch as a failed sync instead of throwing', async () => {
    const { fake, backend } = await setup();
    fake.runner.once('ipset', { code: 1, stderr: 'ipset v7.17: Error in line 1: Kernel error' }, (a) => a[0] === 'restore');
    const r = await backend.sync(base(), emptyChangeSet());
    expect(r.ok).toBe(false);
    expect(r.error?.message).toMatch(/ipset restore failed.*Kernel error/);
  });
});

describe('ipvs backend: what is not ours', () => {
  it('leaves foreign virtual services alone in sync and cleanup, and cleanup removes everything of ours', async () => {
    const fake = createFakeIpvsNode();
    fake.addForeignService('TCP', '10.99.0.1', 80, ['10.99.1.1:80']);
    fake.tables.get('nat')!.get('OUTPUT')!.push('-j FOREIGN-RULE');
    const { backend, sync, ctx } = await setup(undefined, fake);
    await sync(proxyState({ services: [web({ type: 'NodePort' })], slices: [webEndpoints(['10.244.1.11'])] }));
    await sync(proxyState({ services: [] }));
    expect([...fake.services.keys()]).toEqual(['TCP/10.99.0.1:80']);
    await sync(proxyState({ services: [web({ type: 'NodePort' })], slices: [webEndpoints(['10.244.1.11'])] }));
    await backend.cleanup(ctx);
    expect([...fake.services.keys()]).toEqual(['TCP/10.99.0.1:80']);
    expect(fake.services.get('TCP/10.99.0.1:80')!.realServers.size).toBe(1);
    expect([...fake.ipsets.keys()]).toEqual([]);
    expect(fake.links.has('kube-ipvs0')).toBe(false);
    expect([...fake.tables.get('nat')!.keys()]).toEqual(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']);
    expect([...fake.tables.get('filter')!.keys()]).toEqual(['INPUT', 'FORWARD', 'OUTPUT']);
    expect(fake.tables.get('nat')!.get('OUTPUT')).toEqual(['-j FOREIGN-RULE']);
    expect(fake.tables.get('filter')!.get('INPUT')).toEqual([]);
  });

  it('never deletes virtual services inside excludeCIDRs', async () => {
    const { fake, sync } = await setup({ ipvs: { excludeCIDRs: ['10.96.0.0/24'] } });
    await sync(proxyState({ services: [web()] }));
    await sync(proxyState({ services: [] }));
    expect([...fake.services.keys()]).toEqual(['TCP/10.96.0.10:80']);
  });
});

describe('ipvs backend: inspect', () => {
  it('describes the kernel state it owns, in a stable order', async () => {
    const fake = createFakeIpvsNode();
    fake.addForeignService('TCP', '10.99.0.1', 80);
    const { backend, sync } = await setup(undefined, fake);
    await sync(proxyState({ services: [web()], slices: [webEndpoints(['10.244.2.12', '10.244.1.11'])] }));
    const view = (await backend.inspect!()) as { virtualServices: unknown[]; addresses: string[] };
    expect(view.virtualServices).toEqual([
      { service: 'TCP/10.96.0.10:80', scheduler: 'rr', persistentTimeout: null, realServers: ['10.244.1.11:80 Masq w=1', '10.244.2.12:80 Masq w=1'] },
    ]);
    expect(view.addresses).toEqual(['10.96.0.10']);
  });
});
