// Service -> ServicePort conversion; cases follow upstream's TestServiceToServiceMap
// (pkg/proxy/servicechangetracker_test.go) plus the validation this project adds.

import type { V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { IPFamily } from './model.js';
import {
  externallyAccessible,
  serviceToServicePorts,
  servicePortKey,
  servicePortNameString,
  usesClusterEndpoints,
  usesLocalEndpoints,
} from './service-port.js';
import { servicePortRecord } from './fixtures.js';
import { svc } from './builders.test-support.js';

interface Case {
  name: string;
  service: V1Service;
  family?: IPFamily;
  proxyName?: string;
  /** Expected port keys, or a skip reason fragment. */
  keys?: string[];
  skipped?: RegExp;
  check?: (ports: ReturnType<typeof serviceToServicePorts>) => void;
}

const dual = { clusterIP: '172.16.55.4', clusterIPs: ['172.16.55.4', '2001:db8::2:1'], ipFamilies: ['IPv4', 'IPv6'] };

const cases: Case[] = [
  { name: 'headless service is skipped', service: svc('ns2', 'headless', { clusterIP: 'None', clusterIPs: ['None'] }), skipped: /headless/ },
  { name: 'headless service without ports is skipped', service: svc('ns2', 'headless', { clusterIP: 'None', ports: [] }), skipped: /headless/ },
  { name: 'ExternalName service is skipped', service: svc('ns2', 'ext', { type: 'ExternalName', clusterIP: '', externalName: 'foo2.bar.com' }), skipped: /ExternalName/ },
  { name: 'service without ClusterIP is skipped', service: svc('ns2', 'empty', { clusterIP: '' }), skipped: /no ClusterIP/ },
  { name: 'IPv6 ClusterIP under an IPv4 proxy is skipped', service: svc('test', 'v6', { clusterIP: '2001:db8:85a3::8a2e:370:7334' }), skipped: /no IPv4 ClusterIP/ },
  { name: 'IPv4 ClusterIP under an IPv6 proxy is skipped', family: 'IPv6', service: svc('test', 'v4', { clusterIP: '10.20.30.40' }), skipped: /no IPv6 ClusterIP/ },
  {
    name: 'service labelled for another proxy is skipped',
    service: svc('ns', 'other', {}, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'cilium' } } }),
    skipped: /service-proxy-name=cilium/,
  },
  {
    name: 'service labelled with our proxy name is kept',
    proxyName: 'kpts',
    service: svc('ns', 'ours', {}, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'kpts' } } }),
    keys: ['ns/ours:p80/TCP'],
  },
  {
    name: 'ClusterIP service with TCP, UDP and SCTP ports',
    service: svc('ns2', 'cluster-ip', {
      clusterIP: '172.16.55.4',
      ports: [
        { name: 'p1', port: 1234, protocol: 'UDP' },
        { name: 'p2', port: 1235, protocol: 'UDP' },
        { name: 'p3', port: 1236, protocol: 'SCTP' },
        { name: 'p4', port: 1237 },
      ],
    }),
    keys: ['ns2/cluster-ip:p1/UDP', 'ns2/cluster-ip:p2/UDP', 'ns2/cluster-ip:p3/SCTP', 'ns2/cluster-ip:p4/TCP'],
    check: ({ ports }) => expect(ports.map((p) => [p.clusterIP, p.port, p.nodePort])).toEqual([
      ['172.16.55.4', 1234, 0],
      ['172.16.55.4', 1235, 0],
      ['172.16.55.4', 1236, 0],
      ['172.16.55.4', 1237, 0],
    ]),
  },
  {
    name: 'NodePort service keeps its node ports',
    service: svc('ns2', 'node-port', {
      type: 'NodePort',
      clusterIP: '172.16.55.10',
      ports: [
        { name: 'port1', port: 345, protocol: 'UDP', nodePort: 31345 },
        { name: 'port2', port: 344, protocol: 'TCP', nodePort: 31344 },
      ],
    }),
    keys: ['ns2/node-port:port1/UDP', 'ns2/node-port:port2/TCP'],
    check: ({ ports }) => {
      expect(ports.map((p) => p.nodePort)).toEqual([31345, 31344]);
      expect(ports.every(externallyAccessible)).toBe(true);
    },
  },
  {
    name: 'LoadBalancer service: ingress IPs, family filtering',
    service: svc(
      'ns1',
      'lb',
      { type: 'LoadBalancer', clusterIP: '172.16.55.11', ports: [{ name: 'port3', port: 8675, nodePort: 30061 }] },
      { status: { loadBalancer: { ingress: [{ ip: '10.1.2.4' }, { ip: '2001:db8::1' }] } } },
    ),
    keys: ['ns1/lb:port3/TCP'],
    check: ({ ports }) => expect(ports[0]?.loadBalancerVIPs).toEqual(['10.1.2.4']),
  },
  {
    name: 'LoadBalancer ingress with ipMode Proxy is not a VIP',
    service: svc(
      'ns1',
      'lb-proxy',
      { type: 'LoadBalancer', clusterIP: '172.16.55.11', ports: [{ name: 'p', port: 80, nodePort: 30062 }] },
      { status: { loadBalancer: { ingress: [{ ip: '10.1.2.4', ipMode: 'Proxy' }, { ip: '10.1.2.5', ipMode: 'VIP' }] } } },
    ),
    keys: ['ns1/lb-proxy:p/TCP'],
    check: ({ ports }) => expect(ports[0]?.loadBalancerVIPs).toEqual(['10.1.2.5']),
  },
  {
    name: 'LoadBalancer with externalTrafficPolicy Local gets its health-check node port',
    service: svc('ns1', 'only-local', {
      type: 'LoadBalancer',
      clusterIP: '172.16.55.12',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 30345,
      ports: [{ name: 'portx', port: 8677, nodePort: 30063 }],
    }),
    keys: ['ns1/only-local:portx/TCP'],
    check: ({ ports }) => {
      const p = ports[0]!;
      expect([p.externalPolicyLocal, p.healthCheckNodePort, usesLocalEndpoints(p), usesClusterEndpoints(p)]).toEqual([true, 30345, true, true]);
    },
  },
  {
    name: 'externalTrafficPolicy Local on a ClusterIP service without external IPs has no effect',
    service: svc('ns1', 'internal', { externalTrafficPolicy: 'Local' }),
    keys: ['ns1/internal:p80/TCP'],
    check: ({ ports }) => expect(ports[0]?.externalPolicyLocal).toBe(false),
  },
  {
    name: 'IPv4 configuration under IPv4: other-family external IPs and source ranges dropped',
    service: svc('test', 'v4', {
      type: 'LoadBalancer',
      clusterIP: '10.20.30.40',
      externalIPs: ['10.1.2.3', '2001:db8::1'],
      loadBalancerSourceRanges: ['10.0.0.0/8', '2001:db8::/64', ' 192.168.0.0/24 '],
      ports: [{ name: 'test-port', port: 12345, nodePort: 30070 }],
    }, { status: { loadBalancer: { ingress: [{ ip: '10.1.2.3' }, { ip: '2001:db8::3' }] } } }),
    keys: ['test/v4:test-port/TCP'],
    check: ({ ports, problems }) => {
      const p = ports[0]!;
      expect(p.externalIPs).toEqual(['10.1.2.3']);
      expect(p.loadBalancerSourceRanges).toEqual(['10.0.0.0/8', '192.168.0.0/24']);
      expect(p.loadBalancerVIPs).toEqual(['10.1.2.3']);
      expect(problems).toEqual([]);
    },
  },
  {
    name: 'IPv6 configuration under IPv6',
    family: 'IPv6',
    service: svc('test', 'v6', {
      type: 'LoadBalancer',
      clusterIP: '2001:db8:85a3:0:0:8a2e:370:7334',
      externalIPs: ['10.1.2.3', '2001:DB8::1'],
      loadBalancerSourceRanges: ['10.0.0.0/8', '2001:db8::/64'],
      ports: [{ name: 'test-port', port: 12345, nodePort: 30071 }],
    }),
    keys: ['test/v6:test-port/TCP'],
    check: ({ ports }) => {
      const p = ports[0]!;
      expect(p.clusterIP).toBe('2001:db8:85a3::8a2e:370:7334');
      expect(p.externalIPs).toEqual(['2001:db8::1']);
      expect(p.loadBalancerSourceRanges).toEqual(['2001:db8::/64']);
    },
  },
  { name: 'dual-stack service under IPv4 takes the IPv4 ClusterIP', service: svc('ns', 'dual', dual), check: ({ ports }) => expect(ports[0]?.clusterIP).toBe('172.16.55.4') },
  { name: 'dual-stack service under IPv6 takes the IPv6 ClusterIP', family: 'IPv6', service: svc('ns', 'dual', dual), check: ({ ports }) => expect(ports[0]?.clusterIP).toBe('2001:db8::2:1') },
  {
    name: 'single-stack IPv6 service (ipFamilies) under IPv4 is skipped',
    service: svc('ns', 'v6only', { clusterIP: '2001:db8::2:1', clusterIPs: ['2001:db8::2:1'], ipFamilies: ['IPv6'] }),
    skipped: /no IPv4 ClusterIP/,
  },
  {
    name: 'ClientIP session affinity defaults its timeout to 10800 s',
    service: svc('ns', 'sticky', { sessionAffinity: 'ClientIP' }),
    check: ({ ports }) => expect(ports[0]?.sessionAffinity).toEqual({ type: 'ClientIP', timeoutSeconds: 10800 }),
  },
  {
    name: 'ClientIP session affinity with a timeout',
    service: svc('ns', 'sticky', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }),
    check: ({ ports }) => expect(ports[0]?.sessionAffinity).toEqual({ type: 'ClientIP', timeoutSeconds: 60 }),
  },
  {
    name: 'internalTrafficPolicy Local, trafficDistribution and topology annotations are carried',
    service: svc('ns', 'topo', { internalTrafficPolicy: 'Local', trafficDistribution: 'PreferClose' }, { metadata: { annotations: { 'service.kubernetes.io/topology-aware-hints': 'auto' } } }),
    check: ({ ports }) => {
      const p = ports[0]!;
      expect([p.internalPolicyLocal, p.trafficDistribution, p.topologyMode]).toEqual([true, 'PreferClose', 'auto']);
      expect([usesLocalEndpoints(p), usesClusterEndpoints(p)]).toEqual([true, false]);
    },
  },
  {
    name: 'topology-mode annotation wins over the older topology-aware-hints',
    service: svc('ns', 'topo', {}, { metadata: { annotations: { 'service.kubernetes.io/topology-aware-hints': 'disabled', 'service.kubernetes.io/topology-mode': 'Auto' } } }),
    check: ({ ports }) => expect(ports[0]?.topologyMode).toBe('Auto'),
  },
  {
    name: 'invalid ports, IPs and CIDRs are dropped with reasons',
    service: svc('ns', 'bad', {
      externalIPs: ['not-an-ip', '10.0.0.9'],
      loadBalancerSourceRanges: ['10.0.0.0/33', 'garbage'],
      ports: [
        { name: 'zero', port: 0 },
        { name: 'big', port: 70000 },
        { name: 'ok', port: 53, protocol: 'UDP' },
        { name: 'proto', port: 54, protocol: 'ICMP' },
        { name: 'np', port: 55, nodePort: 99999 },
      ],
    }),
    keys: ['ns/bad:ok/UDP'],
    check: ({ ports, problems }) => {
      expect(ports[0]?.externalIPs).toEqual(['10.0.0.9']);
      expect(problems).toHaveLength(7);
      expect(problems.join('\n')).toMatch(/"not-an-ip" is not a valid IP/);
      expect(problems.join('\n')).toMatch(/port "zero": port 0 is not in 1..65535/);
      expect(problems.join('\n')).toMatch(/"10.0.0.0\/33" is not a valid CIDR/);
    },
  },
  { name: 'invalid ClusterIP skips the whole service', service: svc('ns', 'bad', { clusterIP: '300.1.1.1' }), skipped: /not a valid IP/ },
];

describe('serviceToServicePorts', () => {
  it.each(cases)('$name', (c) => {
    const got = serviceToServicePorts(c.service, c.family ?? 'IPv4', { proxyName: c.proxyName });
    if (c.skipped) {
      expect(got.ports).toEqual([]);
      expect(got.skipped).toMatch(c.skipped);
    } else {
      expect(got.skipped).toBeUndefined();
    }
    if (c.keys) expect(got.ports.map((p) => p.key)).toEqual(c.keys);
    c.check?.(got);
  });

  it('never throws on garbage', () => {
    const garbage = [{}, { metadata: { name: 'x' } }, { metadata: { name: 'x' }, spec: { clusterIP: '1.2.3.4', ports: [null] } }] as unknown as V1Service[];
    for (const g of garbage) expect(() => serviceToServicePorts(g, 'IPv4')).not.toThrow();
  });
});

describe('service port names', () => {
  it('spells keys and upstream strings', () => {
    const name = { namespace: 'ns1', name: 'svc1', port: 'p80', protocol: 'TCP' as const };
    expect(servicePortKey(name)).toBe('ns1/svc1:p80/TCP');
    expect(servicePortNameString(name)).toBe('ns1/svc1:p80');
    expect(servicePortNameString({ ...name, port: '' })).toBe('ns1/svc1');
  });

  it('classifies external access (upstream ExternallyAccessible)', () => {
    expect(externallyAccessible(servicePortRecord())).toBe(false);
    expect(externallyAccessible(servicePortRecord({ nodePort: 30000 }))).toBe(true);
    expect(externallyAccessible(servicePortRecord({ loadBalancerVIPs: ['1.2.3.4'] }))).toBe(true);
    expect(externallyAccessible(servicePortRecord({ externalIPs: ['1.2.3.4'] }))).toBe(true);
  });
});
