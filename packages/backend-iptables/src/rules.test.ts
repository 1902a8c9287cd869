// Upstream's canonical iptables proxier scenarios (pkg/proxy/iptables/proxier_test.go), asserted
// on the payload and, through the packet tracer, on where packets end up.

import { describe, expect, it } from 'vitest';
import { endpointSlice, service } from '@kube-proxy-ts/testing';
import type { ProxyState } from '@kube-proxy-ts/core';
import { ruleLines } from '@kube-proxy-ts/netfilter';
import { masqueradeMark, probability } from './layout.js';
import { tracePacket } from './packet-tracer.js';
import { computeRules, renderFullPayload, type RuleOptions } from './rules.js';
import { chainsOf, Cluster, expectedChains, TEST_CLUSTER_CIDR, TEST_EXTERNAL_CLIENT, TEST_HOSTNAME, TEST_NODE_IP } from './cluster.test-support.js';

const options = (overrides: Partial<RuleOptions> = {}): RuleOptions => ({
  masqueradeAll: false,
  masqueradeBit: 14,
  localDetector: { kind: 'cidr', cidr: TEST_CLUSTER_CIDR },
  localhostNodePorts: true,
  randomFully: false,
  conntrackTCPLiberal: false,
  nodePortsOnAllAddresses: true,
  nodePortIPs: [],
  nodeIP: TEST_NODE_IP,
  ...overrides,
});

function payloadFor(state: ProxyState, overrides: Partial<RuleOptions> = {}): string {
  return renderFullPayload(computeRules(state, options(overrides)));
}

const trace = (payload: string, src: string, dst: string, dport: number, protocol: 'tcp' | 'udp' = 'tcp') =>
  tracePacket(payload, { src, dst, dport, protocol }, { localAddresses: [TEST_NODE_IP] });

/** The service chains of upstream's external IP tests. */
function externalIPService(etp: 'Local' | 'Cluster') {
  return [
    service('ns1', 'svc1', {
      type: 'ClusterIP',
      clusterIP: '172.30.0.41',
      externalIPs: ['192.168.99.11'],
      externalTrafficPolicy: etp,
      ports: [{ name: 'p80', port: 80 }],
    }),
    endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1', { ip: '10.180.2.1', nodeName: TEST_HOSTNAME }], ports: [{ name: 'p80', port: 80 }] }),
  ] as const;
}

describe('formatting', () => {
  it('prints the masquerade mark as Go %#08x and probabilities with ten decimals, ties to even', () => {
    expect(masqueradeMark(14)).toBe('0x004000');
    expect(masqueradeMark(0)).toBe('0x000001');
    expect(masqueradeMark(31)).toBe('0x80000000');
    expect(() => masqueradeMark(32)).toThrow(/outside/);
    expect(probability(2)).toBe('0.5000000000');
    expect(probability(3)).toBe('0.3333333333');
    expect(probability(7)).toBe('0.1428571429');
    // 1/2048 = 0.00048828125 exactly: Go rounds the tie to even.
    expect(probability(2048)).toBe('0.0004882812');
  });
});

describe('computeRules: upstream scenarios', () => {
  it('writes a ClusterIP service as upstream (TestOverallIPTablesRules, svc1)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const payload = payloadFor(state);
    const tables = chainsOf(payload);
    expect(tables.nat).toEqual(
      expectedChains(`
        :KUBE-SERVICES - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x004000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x004000
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
      `),
    );
    expect(tables.filter).toEqual(
      expectedChains(`
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        :KUBE-FIREWALL - [0:0]
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x004000/0x004000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
      `),
    );
    const fromPod = trace(payload, '10.0.0.2', '172.30.0.41', 80);
    expect(fromPod.dnatTargets).toEqual(['10.180.0.1:80']);
    expect(fromPod.outcomes.every((o) => !o.masquerade)).toBe(true);
    // Off-cluster sources are masqueraded; the hairpin case too.
    expect(trace(payload, TEST_EXTERNAL_CLIENT, '172.30.0.41', 80).outcomes.every((o) => o.masquerade)).toBe(true);
    expect(trace(payload, '10.180.0.1', '172.30.0.41', 80).outcomes.every((o) => o.masquerade)).toBe(true);
    // Wrong port: not a service.
    expect(trace(payload, '10.0.0.2', '172.30.0.41', 81).dnatTargets).toEqual([]);
  });

  it('sends external-IP traffic only to local endpoints, unmasqueraded, with externalTrafficPolicy Local (TestOnlyLocalExternalIPs)', () => {
    const { state } = new Cluster().upsert(...externalIPService('Local')).checkpoint();
    const payload = payloadFor(state);
    const nat = chainsOf(payload).nat!;
    expect(nat['KUBE-EXT-XPGD46QRK7WJZT7O']).toEqual([
      '-m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
      '-m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-j KUBE-SVL-XPGD46QRK7WJZT7O',
    ]);
    expect(nat['KUBE-SVC-XPGD46QRK7WJZT7O']).toEqual([
      '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ',
      '-m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ',
    ]);
    expect(nat['KUBE-SVL-XPGD46QRK7WJZT7O']).toEqual(['-m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ']);
    expect(nat['KUBE-SERVICES']).toContain('-m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O');

    expect(trace(payload, '10.0.0.2', '172.30.0.41', 80).dnatTargets).toEqual(['10.180.0.1:80', '10.180.2.1:80']);
    const external = trace(payload, TEST_EXTERNAL_CLIENT, '192.168.99.11', 80);
    expect(external.dnatTargets).toEqual(['10.180.2.1:80']);
    expect(external.outcomes.some((o) => o.masquerade)).toBe(false);
    // A pod using the external IP short-circuits to every endpoint.
    expect(trace(payload, '10.0.0.2', '192.168.99.11', 80).dnatTargets).toEqual(['10.180.0.1:80', '10.180.2.1:80']);
  });

  it('masquerades external-IP traffic to all endpoints with externalTrafficPolicy Cluster (TestNonLocalExternalIPs)', () => {
    const { state } = new Cluster().upsert(...externalIPService('Cluster')).checkpoint();
    const payload = payloadFor(state);
    const nat = chainsOf(payload).nat!;
    expect(nat['KUBE-EXT-XPGD46QRK7WJZT7O']).toEqual([
      '-m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ',
      '-j KUBE-SVC-XPGD46QRK7WJZT7O',
    ]);
    expect(nat['KUBE-SVL-XPGD46QRK7WJZT7O']).toBeUndefined();
    const external = trace(payload, TEST_EXTERNAL_CLIENT, '192.168.99.11', 80);
    expect(external.dnatTargets).toEqual(['10.180.0.1:80', '10.180.2.1:80']);
    expect(external.outcomes.every((o) => o.masquerade)).toBe(true);
  });

  it('rejects ClusterIP, external IP, NodePort and LB traffic of a service without endpoints (TestNoEndpointsReject)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', {
          type: 'LoadBalancer',
          clusterIP: '172.30.0.41',
          externalIPs: ['192.168.99.11'],
          loadBalancerIngress: ['1.2.3.4'],
          ports: [{ name: 'p80', port: 80, nodePort: 3001 }],
        }),
      )
      .checkpoint();
    const payload = payloadFor(state);
    const { filter, nat } = chainsOf(payload);
    expect(filter!['KUBE-SERVICES']).toEqual(['-m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT']);
    expect(filter!['KUBE-EXTERNAL-SERVICES']).toEqual([
      '-m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j REJECT',
      '-m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT',
      '-m comment --comment "ns1/svc1:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT',
    ]);
    expect(Object.keys(nat!).filter((c) => c.startsWith('KUBE-SVC') || c.startsWith('KUBE-EXT'))).toEqual([]);
    // The filter table sees the original destination: the connection is refused at once.
    expect(trace(payload, '10.0.0.2', '172.30.0.41', 80).verdicts).toEqual(['REJECT']);
    expect(trace(payload, TEST_EXTERNAL_CLIENT, '1.2.3.4', 80).verdicts).toEqual(['REJECT']);
    expect(trace(payload, TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001).verdicts).toEqual(['REJECT']);
  });

  it('filters LB traffic by loadBalancerSourceRanges through KUBE-FW and KUBE-PROXY-FIREWALL (TestLoadBalancer)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', {
          type: 'LoadBalancer',
          clusterIP: '172.30.0.41',
          loadBalancerIngress: ['1.2.3.4'],
          loadBalancerSourceRanges: ['203.0.113.0/25', '192.168.0.0/24'],
          ports: [{ name: 'p80', port: 80, nodePort: 3001 }],
        }),
        endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const payload = payloadFor(state);
    const { nat, filter } = chainsOf(payload);
    // The second range holds the node IP, so the LB IP itself is allowed as a source too.
    expect(nat!['KUBE-FW-XPGD46QRK7WJZT7O']).toEqual([
      '-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 192.168.0.0/24 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 1.2.3.4 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"',
    ]);
    expect(filter!['KUBE-PROXY-FIREWALL']).toEqual([
      '-m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP',
    ]);
    expect(nat!['KUBE-NODEPORTS']).toEqual(['-m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O']);

    const allowed = trace(payload, '203.0.113.2', '1.2.3.4', 80);
    expect(allowed.dnatTargets).toEqual(['10.180.0.1:80']);
    expect(allowed.verdicts).toEqual(['ACCEPT']); // marked for masquerade: KUBE-FORWARD accepts it
    const refused = trace(payload, '203.0.113.200', '1.2.3.4', 80);
    expect(refused.dnatTargets).toEqual([]);
    expect(refused.verdicts).toEqual(['DROP']);
    // Node ports ignore the source ranges, as upstream.
    expect(trace(payload, '203.0.113.200', TEST_NODE_IP, 3001).dnatTargets).toEqual(['10.180.0.1:80']);
  });

  it('accepts the health-check node port of an externalTrafficPolicy Local service (TestHealthCheckNodePort)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { type: 'LoadBalancer', clusterIP: '172.30.0.42', externalTrafficPolicy: 'Local', healthCheckNodePort: 30000, ports: [{ name: 'p80', port: 80, nodePort: 3001 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: [{ ip: '10.180.0.1', nodeName: TEST_HOSTNAME }], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const payload = payloadFor(state);
    expect(chainsOf(payload).filter!['KUBE-NODEPORTS']).toEqual(['-m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT']);
    expect(tracePacket(payload, { src: TEST_EXTERNAL_CLIENT, dst: TEST_NODE_IP, dport: 30000, protocol: 'tcp' }, { localAddresses: [TEST_NODE_IP] }).verdicts).toEqual(['ACCEPT']);
    // The node port itself reaches the local endpoint without masquerade.
    const viaNodePort = trace(payload, TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001);
    expect(viaNodePort.dnatTargets).toEqual(['10.180.0.1:80']);
    expect(viaNodePort.outcomes.some((o) => o.masquerade)).toBe(false);
  });

  it('keeps a client on its endpoint with ClientIP affinity (recent module)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { clusterIP: '172.30.0.41', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } }, ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1', '10.180.0.2'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const nat = chainsOf(payloadFor(state)).nat!;
    const svc = nat['KUBE-SVC-XPGD46QRK7WJZT7O']!;
    const seps = Object.keys(nat).filter((c) => c.startsWith('KUBE-SEP-'));
    expect(seps).toHaveLength(2);
    expect(svc.slice(1, 3)).toEqual([
      `-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ`,
      expect.stringContaining('--rcheck --seconds 10800 --reap -j KUBE-SEP-'),
    ]);
    expect(nat['KUBE-SEP-SXIVWICOYRO3J4NJ']![1]).toBe(
      '-m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80',
    );
  });

  it('drops ClusterIP traffic of internalTrafficPolicy Local without local endpoints, and uses KUBE-SVL with them', () => {
    const svc = service('ns1', 'svc1', { clusterIP: '172.30.0.41', internalTrafficPolicy: 'Local', ports: [{ name: 'p80', port: 80 }] });
    const remoteOnly = new Cluster().upsert(svc, endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] })).checkpoint();
    const dropPayload = payloadFor(remoteOnly.state);
    expect(chainsOf(dropPayload).filter!['KUBE-SERVICES']).toEqual([
      '-m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP',
    ]);
    expect(trace(dropPayload, '10.0.0.2', '172.30.0.41', 80).verdicts).toEqual(['DROP']);

    const withLocal = new Cluster()
      .upsert(svc, endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1', { ip: '10.180.2.1', nodeName: TEST_HOSTNAME }], ports: [{ name: 'p80', port: 80 }] }))
      .checkpoint();
    const payload = payloadFor(withLocal.state);
    expect(chainsOf(payload).nat!['KUBE-SERVICES']![0]).toContain('-j KUBE-SVL-XPGD46QRK7WJZT7O');
    expect(trace(payload, '10.0.0.2', '172.30.0.41', 80).dnatTargets).toEqual(['10.180.2.1:80']);
  });

  it('falls back to serving terminating endpoints when no endpoint is ready (TestEndpointSliceWithTerminatingEndpoints)', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'svc1', {
          endpoints: [
            { ip: '10.0.1.1', ready: false, serving: true, terminating: true },
            { ip: '10.0.1.2', ready: false, serving: false, terminating: true },
          ],
          ports: [{ name: 'p80', port: 80 }],
        }),
      )
      .checkpoint();
    expect(trace(payloadFor(state), '10.0.0.2', '172.30.0.41', 80).dnatTargets).toEqual(['10.0.1.1:80']);
  });

  it('masquerades all ClusterIP traffic with masqueradeAll, and none without a local detector', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const all = chainsOf(payloadFor(state, { masqueradeAll: true })).nat!['KUBE-SVC-XPGD46QRK7WJZT7O']!;
    expect(all[0]).toBe('-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ');
    const none = chainsOf(payloadFor(state, { localDetector: { kind: 'none', reason: 'test' } })).nat!['KUBE-SVC-XPGD46QRK7WJZT7O']!;
    expect(none).toEqual(['-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ']);
    const bridge = chainsOf(payloadFor(state, { localDetector: { kind: 'interfacePrefix', prefix: 'veth' } })).nat!['KUBE-SVC-XPGD46QRK7WJZT7O']!;
    expect(bridge[0]).toContain('! -i veth+ -j KUBE-MARK-MASQ');
  });

  it('writes node-port capture per nodePortAddresses and random-fully masquerade when supported', () => {
    const { state } = new Cluster().checkpoint();
    const restricted = chainsOf(payloadFor(state, { nodePortsOnAllAddresses: false, nodePortIPs: ['192.168.0.2', '127.0.0.1'], localhostNodePorts: false, randomFully: true })).nat!;
    expect(restricted['KUBE-SERVICES']).toEqual([
      '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.0.2 -j KUBE-NODEPORTS',
    ]);
    expect(restricted['KUBE-POSTROUTING']![2]).toBe('-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully');
    const noLocalhost = chainsOf(payloadFor(state, { localhostNodePorts: false }));
    expect(noLocalhost.nat!['KUBE-SERVICES']![0]).toContain('-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS');
    expect(noLocalhost.filter!['KUBE-FIREWALL']).toBeUndefined();
    expect(chainsOf(payloadFor(state, { conntrackTCPLiberal: true })).filter!['KUBE-FORWARD']).toHaveLength(2);
  });

  it('counts INVALID drops and localhost node ports into the nfacct objects the node has, as upstream', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { type: 'NodePort', clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80, nodePort: 3001 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const counted = chainsOf(payloadFor(state, { nfacctCounters: new Set(['ct_state_invalid_dropped_pkts', 'localhost_nps_accepted_pkts']) }));
    expect(counted.filter!['KUBE-FORWARD']![0]).toBe('-m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP');
    expect(counted.nat!['KUBE-NODEPORTS']).toEqual([
      '-m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O',
    ]);
    // A node without the objects (or without nfacct) gets rules that do not name them: a missing one fails the restore.
    const uncounted = payloadFor(state);
    expect(uncounted).not.toContain('nfacct');
    expect(chainsOf(uncounted).nat!['KUBE-NODEPORTS']).toHaveLength(1);
    // No localhost node ports, no localhost counting rule.
    expect(chainsOf(payloadFor(state, { localhostNodePorts: false, nfacctCounters: new Set(['localhost_nps_accepted_pkts']) })).nat!['KUBE-NODEPORTS']).toHaveLength(1);
  });

  it('writes IPv6 services with bracketed DNAT targets and no localhost node ports', () => {
    const { state } = new Cluster('IPv6')
      .upsert(
        service('ns1', 'svc1', { type: 'NodePort', clusterIP: 'fd00:172:30::41', ipFamily: 'IPv6', ports: [{ name: 'p80', port: 80, nodePort: 3001 }] }),
        endpointSlice('ns1', 'svc1', { endpoints: ['fd00:10:180::1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const payload = payloadFor(state, { localDetector: { kind: 'cidr', cidr: 'fd00:10::/64' }, localhostNodePorts: false, nodeIP: '2001:db8::1' });
    const { nat, filter } = chainsOf(payload);
    const sep = Object.entries(nat!).find(([c]) => c.startsWith('KUBE-SEP-'))![1];
    expect(sep[1]).toBe('-m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:10:180::1]:80');
    expect(nat!['KUBE-SERVICES']!.at(-1)).toContain('-m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS');
    // Upstream ensures kubelet's KUBE-FIREWALL (and its jumps) in IPv6 too; nothing to block there.
    expect(filter!['KUBE-FIREWALL']).toEqual([]);
    const viaNodePort = tracePacket(payload, { src: '2001:db8::99', dst: '2001:db8::1', dport: 3001, protocol: 'tcp' }, { localAddresses: ['2001:db8::1'] });
    expect(viaNodePort.dnatTargets).toEqual(['[fd00:10:180::1]:80']);
  });

  it('drops per-endpoint comments in large-cluster mode (more than 1000 endpoints)', () => {
    const endpoints = Array.from({ length: 1001 }, (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'svc1', { endpoints, ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const rules = computeRules(state, options());
    expect(rules.largeClusterMode).toBe(true);
    const chains = rules.services.values().next().value!.chains;
    const svc = ruleLines(chains.get('KUBE-SVC-XPGD46QRK7WJZT7O')!);
    expect(svc[1]).toMatch(/^-m statistic --mode random --probability 0\.0009990010 -j KUBE-SEP-/);
    const sep = ruleLines([...chains.entries()].find(([c]) => c.startsWith('KUBE-SEP-'))![1]);
    expect(sep[0]).toMatch(/^-s 10\.1\.\d+\.\d+ -j KUBE-MARK-MASQ$/);
    // The ClusterIP rules keep their comments (operators grep for them).
    expect(svc[0]).toContain('"ns1/svc1:p80 cluster IP"');
  });

  it('skips a service port with unusable data and still writes the others', () => {
    const { state } = new Cluster()
      .upsert(
        service('ns1', 'good', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
        endpointSlice('ns1', 'good', { endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
      )
      .checkpoint();
    const bad = { ...state.services.values().next().value!, key: 'ns1/bad:p80/TCP', name: { namespace: 'ns1', name: 'bad', port: 'p80', protocol: 'TCP' as const }, externalIPs: ['1.2.3.4 -j ACCEPT'] };
    const withBad: ProxyState = { ...state, services: new Map([...state.services, [bad.key, bad]]) };
    const rules = computeRules(withBad, options());
    expect(rules.skipped.get('ns1/bad:p80/TCP')).toMatch(/not an IPv4 address/);
    expect(rules.services.has('ns1/good:p80/TCP')).toBe(true);
    expect(renderFullPayload(rules)).not.toContain('ACCEPT"');
  });
});
