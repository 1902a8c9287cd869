// The trackers through ProxyStateTracker. Endpoint cases follow upstream's TestUpdateEndpointsMap
// (pkg/proxy/endpointschangetracker_test.go, UDP so that conntrack results show); service cases
// follow TestBuildServiceMapAddRemove / ServiceUpdate / Headless / ExternalName
// (servicechangetracker_test.go).

import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ChangeSet } from './contract.js';
import { ProxyStateTracker } from './proxy-state-tracker.js';
import { slice, svc, testClock, v1Node } from './builders.test-support.js';

const HOST = 'test-hostname';
const udp = (name: string, port: number) => ({ name, port, protocol: 'UDP' as const });
const local = (ip: string) => ({ ip, nodeName: HOST });

// Upstream's slice shapes (makeTestEndpointSlice(ns, name, n, fn) names the slice `${name}-${n}`).
const shapes = {
  unnamedPort: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1'], [udp('', 11)]),
  unnamedPortLocal: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('1.1.1.1')], [udp('', 11)]),
  unnamedPortTerminating: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [{ ip: '1.1.1.1', ready: false, serving: true, terminating: true }], [udp('', 11)]),
  unnamedPortGone: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [{ ip: '1.1.1.1', ready: false, serving: false, terminating: true }], [udp('', 11)]),
  unnamedPortUnready: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [{ ip: '1.1.1.1', ready: false, serving: false }], [udp('', 11)]),
  namedPort: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1'], [udp('p11', 11)]),
  namedPortLocal: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('1.1.1.1')], [udp('p11', 11)]),
  namedPortRenamed: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1'], [udp('p11-2', 11)]),
  namedPortRenumbered: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1'], [udp('p11', 22)]),
  namedPortsLocalNoLocal: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1', local('1.1.1.2')], [udp('p11', 11), udp('p12', 12)]),
  multipleSubsets_s1: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1'], [udp('p11', 11)]),
  multipleSubsets_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.2'], [udp('p12', 12)]),
  multipleSubsetsWithLocal_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('1.1.1.2')], [udp('p12', 12)]),
  multipleSubsetsMultiplePortsLocal_s1: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('1.1.1.1')], [udp('p11', 11), udp('p12', 12)]),
  multipleSubsetsMultiplePortsLocal_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.3'], [udp('p13', 13)]),
  complexBefore2_s1: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('2.2.2.2'), local('2.2.2.22')], [udp('p22', 22)]),
  complexBefore2_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('2.2.2.3')], [udp('p23', 23)]),
  complexBefore4_s1: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('4.4.4.4'), local('4.4.4.5')], [udp('p44', 44)]),
  complexBefore4_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('4.4.4.6')], [udp('p45', 45)]),
  complexAfter1_s1: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.1', '1.1.1.11'], [udp('p11', 11)]),
  complexAfter1_s2: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['1.1.1.2'], [udp('p12', 12), udp('p122', 122)]),
  complexAfter3: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, ['3.3.3.3'], [udp('p33', 33)]),
  complexAfter4: (ns: string, n: string, i: number) => slice(ns, n, `${n}-${i}`, [local('4.4.4.4')], [udp('p44', 44)]),
};
type Shape = keyof typeof shapes;
/** One slot: [namespace, service, slice number, shape or null for "absent"]. */
type Slot = [string, string, number, Shape | null];

interface EndpointsCase {
  name: string;
  previous: Slot[];
  current: Slot[];
  /** key -> "ip:port" (with "*" appended for local endpoints) */
  expected: Record<string, string[]>;
  changed: string[];
  stale?: string[];
  newlyActive?: string[];
}

const cases: EndpointsCase[] = [
  { name: 'nothing', previous: [], current: [], expected: {}, changed: [] },
  { name: 'no change, unnamed port', previous: [['ns1', 'ep1', 1, 'unnamedPort']], current: [['ns1', 'ep1', 1, 'unnamedPort']], expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11'] }, changed: [] },
  { name: 'no change, named port, local', previous: [['ns1', 'ep1', 1, 'namedPortLocal']], current: [['ns1', 'ep1', 1, 'namedPortLocal']], expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11*'] }, changed: [] },
  {
    name: 'no change, multiple slices',
    previous: [['ns1', 'ep1', 1, 'multipleSubsets_s1'], ['ns1', 'ep1', 2, 'multipleSubsets_s2']],
    current: [['ns1', 'ep1', 1, 'multipleSubsets_s1'], ['ns1', 'ep1', 2, 'multipleSubsets_s2']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11'], 'ns1/ep1:p12/UDP': ['1.1.1.2:12'] },
    changed: [],
  },
  {
    name: 'no change, multiple slices, multiple ports, local',
    previous: [['ns1', 'ep1', 1, 'multipleSubsetsMultiplePortsLocal_s1'], ['ns1', 'ep1', 2, 'multipleSubsetsMultiplePortsLocal_s2']],
    current: [['ns1', 'ep1', 1, 'multipleSubsetsMultiplePortsLocal_s1'], ['ns1', 'ep1', 2, 'multipleSubsetsMultiplePortsLocal_s2']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11*'], 'ns1/ep1:p12/UDP': ['1.1.1.1:12*'], 'ns1/ep1:p13/UDP': ['1.1.1.3:13'] },
    changed: [],
  },
  {
    name: 'add an EndpointSlice',
    previous: [['ns1', 'ep1', 1, null]],
    current: [['ns1', 'ep1', 1, 'unnamedPortLocal']],
    expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11*'] },
    changed: ['ns1/ep1:/UDP'],
    newlyActive: ['ns1/ep1:/UDP'],
  },
  {
    name: 'remove an EndpointSlice',
    previous: [['ns1', 'ep1', 1, 'unnamedPortLocal']],
    current: [['ns1', 'ep1', 1, null]],
    expected: {},
    changed: ['ns1/ep1:/UDP'],
    stale: ['ns1/ep1:/UDP 1.1.1.1:11'],
  },
  {
    name: 'add an IP and port',
    previous: [['ns1', 'ep1', 1, 'namedPort']],
    current: [['ns1', 'ep1', 1, 'namedPortsLocalNoLocal']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11', '1.1.1.2:11*'], 'ns1/ep1:p12/UDP': ['1.1.1.1:12', '1.1.1.2:12*'] },
    changed: ['ns1/ep1:p11/UDP', 'ns1/ep1:p12/UDP'],
    newlyActive: ['ns1/ep1:p12/UDP'],
  },
  {
    name: 'remove an IP and port',
    previous: [['ns1', 'ep1', 1, 'namedPortsLocalNoLocal']],
    current: [['ns1', 'ep1', 1, 'namedPort']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:p11/UDP', 'ns1/ep1:p12/UDP'],
    stale: ['ns1/ep1:p11/UDP 1.1.1.2:11', 'ns1/ep1:p12/UDP 1.1.1.1:12', 'ns1/ep1:p12/UDP 1.1.1.2:12'],
  },
  {
    name: 'add a slice to an endpoint',
    previous: [['ns1', 'ep1', 1, 'namedPort'], ['ns1', 'ep1', 2, null]],
    current: [['ns1', 'ep1', 1, 'multipleSubsets_s1'], ['ns1', 'ep1', 2, 'multipleSubsetsWithLocal_s2']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11'], 'ns1/ep1:p12/UDP': ['1.1.1.2:12*'] },
    changed: ['ns1/ep1:p12/UDP'],
    newlyActive: ['ns1/ep1:p12/UDP'],
  },
  {
    name: 'remove a slice from an endpoint',
    previous: [['ns1', 'ep1', 1, 'multipleSubsets_s1'], ['ns1', 'ep1', 2, 'multipleSubsets_s2']],
    current: [['ns1', 'ep1', 1, 'namedPort'], ['ns1', 'ep1', 2, null]],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:p12/UDP'],
    stale: ['ns1/ep1:p12/UDP 1.1.1.2:12'],
  },
  {
    name: 'rename a port',
    previous: [['ns1', 'ep1', 1, 'namedPort']],
    current: [['ns1', 'ep1', 1, 'namedPortRenamed']],
    expected: { 'ns1/ep1:p11-2/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:p11-2/UDP', 'ns1/ep1:p11/UDP'],
    stale: ['ns1/ep1:p11/UDP 1.1.1.1:11'],
    newlyActive: ['ns1/ep1:p11-2/UDP'],
  },
  {
    name: 'renumber a port',
    previous: [['ns1', 'ep1', 1, 'namedPort']],
    current: [['ns1', 'ep1', 1, 'namedPortRenumbered']],
    expected: { 'ns1/ep1:p11/UDP': ['1.1.1.1:22'] },
    changed: ['ns1/ep1:p11/UDP'],
    stale: ['ns1/ep1:p11/UDP 1.1.1.1:11'],
  },
  {
    name: 'complex add and remove',
    previous: [
      ['ns1', 'ep1', 1, 'namedPort'],
      ['ns1', 'ep1', 2, null],
      ['ns2', 'ep2', 1, 'complexBefore2_s1'],
      ['ns2', 'ep2', 2, 'complexBefore2_s2'],
      ['ns3', 'ep3', 1, null],
      ['ns4', 'ep4', 1, 'complexBefore4_s1'],
      ['ns4', 'ep4', 2, 'complexBefore4_s2'],
    ],
    current: [
      ['ns1', 'ep1', 1, 'complexAfter1_s1'],
      ['ns1', 'ep1', 2, 'complexAfter1_s2'],
      ['ns2', 'ep2', 1, null],
      ['ns2', 'ep2', 2, null],
      ['ns3', 'ep3', 1, 'complexAfter3'],
      ['ns4', 'ep4', 1, 'complexAfter4'],
      ['ns4', 'ep4', 2, null],
    ],
    expected: {
      'ns1/ep1:p11/UDP': ['1.1.1.11:11', '1.1.1.1:11'], // sorted by "ip:port" string, as upstream
      'ns1/ep1:p12/UDP': ['1.1.1.2:12'],
      'ns1/ep1:p122/UDP': ['1.1.1.2:122'],
      'ns3/ep3:p33/UDP': ['3.3.3.3:33'],
      'ns4/ep4:p44/UDP': ['4.4.4.4:44*'],
    },
    changed: ['ns1/ep1:p11/UDP', 'ns1/ep1:p12/UDP', 'ns1/ep1:p122/UDP', 'ns2/ep2:p22/UDP', 'ns2/ep2:p23/UDP', 'ns3/ep3:p33/UDP', 'ns4/ep4:p44/UDP', 'ns4/ep4:p45/UDP'],
    stale: ['ns2/ep2:p22/UDP 2.2.2.2:22', 'ns2/ep2:p22/UDP 2.2.2.22:22', 'ns2/ep2:p23/UDP 2.2.2.3:23', 'ns4/ep4:p44/UDP 4.4.4.5:44', 'ns4/ep4:p45/UDP 4.4.4.6:45'],
    newlyActive: ['ns1/ep1:p12/UDP', 'ns1/ep1:p122/UDP', 'ns3/ep3:p33/UDP'],
  },
  {
    name: 'change from 0 endpoint address to 1 unnamed port',
    previous: [['ns1', 'ep1', 1, null]],
    current: [['ns1', 'ep1', 1, 'unnamedPort']],
    expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:/UDP'],
    newlyActive: ['ns1/ep1:/UDP'],
  },
  {
    name: 'ready endpoint turns serving-terminating: no stale flows',
    previous: [['ns1', 'ep1', 1, 'unnamedPort']],
    current: [['ns1', 'ep1', 1, 'unnamedPortTerminating']],
    expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:/UDP'],
  },
  {
    name: 'serving-terminating endpoint stops serving: its flows are stale',
    previous: [['ns1', 'ep1', 1, 'unnamedPortTerminating']],
    current: [['ns1', 'ep1', 1, 'unnamedPortGone']],
    expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:/UDP'],
    stale: ['ns1/ep1:/UDP 1.1.1.1:11'],
  },
  {
    name: 'unready endpoint becomes ready: the service is newly active',
    previous: [['ns1', 'ep1', 1, 'unnamedPortUnready']],
    current: [['ns1', 'ep1', 1, 'unnamedPort']],
    expected: { 'ns1/ep1:/UDP': ['1.1.1.1:11'] },
    changed: ['ns1/ep1:/UDP'],
    newlyActive: ['ns1/ep1:/UDP'],
  },
];

function newTracker(): ProxyStateTracker {
  return new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST });
}

function applySlots(t: ProxyStateTracker, slots: Slot[], before: Map<string, V1EndpointSlice>): void {
  for (const [ns, name, i, shape] of slots) {
    const id = `${ns}/${name}-${i}`;
    const old = before.get(id);
    if (shape === null) {
      if (old) t.onEndpointSliceDelete(old);
      before.delete(id);
      continue;
    }
    const obj = shapes[shape](ns, name, i);
    if (old) t.onEndpointSliceUpdate(old, obj);
    else t.onEndpointSliceAdd(obj);
    before.set(id, obj);
  }
}

const staleList = (c: ChangeSet) => c.staleUDPEndpoints.map((s) => `${s.servicePort} ${s.endpoint.hostPort}`).sort();

describe('endpoints tracking (upstream TestUpdateEndpointsMap)', () => {
  it.each(cases)('$name', (c) => {
    const t = newTracker();
    const objects = new Map<string, V1EndpointSlice>();
    applySlots(t, c.previous, objects);
    t.checkpoint();
    applySlots(t, c.current, objects);
    const { state, changes } = t.checkpoint();
    const got = Object.fromEntries([...state.endpoints].map(([k, eps]) => [k, eps.map((e) => e.hostPort + (e.isLocal ? '*' : ''))]));
    expect(got).toEqual(c.expected);
    expect([...changes.servicePorts].sort()).toEqual([...c.changed].sort());
    expect(staleList(changes)).toEqual([...(c.stale ?? [])].sort());
    expect([...changes.newlyActiveUDPServices].sort()).toEqual([...(c.newlyActive ?? [])].sort());
    expect(t.pendingEndpointChanges()).toBe(0);
  });
});

describe('service tracking', () => {
  const services = () => [
    svc('somewhere-else', 'cluster-ip', { clusterIP: '172.16.55.4', ports: [{ name: 'something', port: 1234, protocol: 'UDP' }, { name: 'somethingelse', port: 1235, protocol: 'UDP' }, { name: 'sctpport', port: 1236, protocol: 'SCTP' }] }),
    svc('somewhere-else', 'node-port', { type: 'NodePort', clusterIP: '172.16.55.10', ports: [{ name: 'blahblah', port: 345, nodePort: 31345, protocol: 'UDP' }, { name: 'moreblahblah', port: 344, nodePort: 31344 }, { name: 'sctpblah', port: 343, nodePort: 31343, protocol: 'SCTP' }] }),
    svc('somewhere', 'load-balancer', { type: 'LoadBalancer', clusterIP: '172.16.55.11', ports: [{ name: 'foobar', port: 8675, nodePort: 30061, protocol: 'UDP' }, { name: 'baz', port: 8676, nodePort: 30062, protocol: 'UDP' }] }, { status: { loadBalancer: { ingress: [{ ip: '10.1.2.4' }] } } }),
    svc('somewhere', 'only-local-load-balancer', { type: 'LoadBalancer', clusterIP: '172.16.55.12', externalTrafficPolicy: 'Local', healthCheckNodePort: 345, ports: [{ name: 'foobar2', port: 8677, nodePort: 30063, protocol: 'UDP' }, { name: 'baz', port: 8678, nodePort: 30064, protocol: 'UDP' }] }, { status: { loadBalancer: { ingress: [{ ip: '10.1.2.3' }] } } }),
  ];

  it('adds and removes services (upstream TestBuildServiceMapAddRemove)', () => {
    const t = newTracker();
    for (const s of services()) t.onServiceAdd(s);
    expect(t.pendingServiceChanges()).toBe(4);
    const first = t.checkpoint();
    expect(first.state.services.size).toBe(10);
    expect(first.changes.servicePorts.size).toBe(10);
    expect(first.changes.deletedUDPClusterIPs.size).toBe(0);
    expect(first.state.services.get('somewhere/only-local-load-balancer:foobar2/UDP')?.healthCheckNodePort).toBe(345);

    // Remove some ports of cluster-ip and delete the other services, as upstream does.
    const [clusterIP, nodePort, lb, localLb] = services();
    const trimmed = svc('somewhere-else', 'cluster-ip', { clusterIP: '172.16.55.4', ports: [{ name: 'something', port: 1234, protocol: 'UDP' }] });
    t.onServiceUpdate(clusterIP!, trimmed);
    t.onServiceDelete(nodePort!);
    t.onServiceDelete(lb!);
    t.onServiceDelete(localLb!);
    const second = t.checkpoint();
    expect([...second.state.services.keys()]).toEqual(['somewhere-else/cluster-ip:something/UDP']);
    expect(second.changes.servicePorts.size).toBe(9);
    // 172.16.55.4 lost a UDP port but is still in use: upstream reports it anyway (its "somethingelse" port is gone).
    expect([...second.changes.deletedUDPClusterIPs].sort()).toEqual(['172.16.55.10', '172.16.55.11', '172.16.55.12', '172.16.55.4']);
  });

  it('ignores headless and ExternalName services (upstream TestUpdateServiceMapHeadless / TypeExternalName)', () => {
    const t = newTracker();
    t.onServiceAdd(svc('ns', 'headless', { clusterIP: 'None', ports: [{ name: 'rpc', port: 1234, protocol: 'UDP' }] }));
    t.onServiceAdd(svc('ns', 'headless-without-port', { clusterIP: 'None', ports: [] }));
    t.onServiceAdd(svc('ns', 'external-name', { type: 'ExternalName', clusterIP: '', externalName: 'foo2.bar.com' }));
    expect(t.pendingServiceChanges()).toBe(0);
    const { state, changes } = t.checkpoint();
    expect(state.services.size).toBe(0);
    expect(changes.servicePorts.size).toBe(0);
  });

  it('follows a service through type changes and back (upstream TestBuildServiceMapServiceUpdate)', () => {
    const t = newTracker();
    const ports = [{ name: 'something', port: 1234, protocol: 'UDP' as const }, { name: 'somethingelse', port: 1235, protocol: 'TCP' as const }];
    const clusterIP = svc('somewhere', 'some-service', { clusterIP: '172.16.55.4', ports });
    const lb = svc('somewhere', 'some-service', { type: 'LoadBalancer', clusterIP: '172.16.55.4', externalTrafficPolicy: 'Local', healthCheckNodePort: 345, ports: ports.map((p, i) => ({ ...p, nodePort: 30000 + i })) }, { status: { loadBalancer: { ingress: [{ ip: '10.1.2.3' }] } } });
    t.onServiceAdd(clusterIP);
    expect(t.checkpoint().changes.servicePorts.size).toBe(2);

    t.onServiceUpdate(clusterIP, lb);
    const toLb = t.checkpoint();
    expect(toLb.changes.servicePorts.size).toBe(2);
    expect(toLb.changes.deletedUDPClusterIPs.size).toBe(0);
    expect(toLb.state.services.get('somewhere/some-service:something/UDP')?.healthCheckNodePort).toBe(345);

    // A no-op update (informer resync) changes nothing.
    t.onServiceUpdate(lb, structuredClone(lb));
    expect(t.pendingServiceChanges()).toBe(0);
    expect(t.checkpoint().changes.servicePorts.size).toBe(0);

    t.onServiceUpdate(lb, clusterIP);
    const back = t.checkpoint();
    expect(back.changes.servicePorts.size).toBe(2);
    expect(back.state.services.get('somewhere/some-service:something/UDP')?.healthCheckNodePort).toBe(0);
  });

  it('an update that ends where it started is no change; previous is kept from the first change', () => {
    const t = newTracker();
    const a = svc('ns', 's', { clusterIP: '10.0.0.1' });
    const b = svc('ns', 's', { clusterIP: '10.0.0.1', sessionAffinity: 'ClientIP' });
    t.onServiceAdd(a);
    t.checkpoint();
    t.onServiceUpdate(a, b);
    expect(t.pendingServiceChanges()).toBe(1);
    t.onServiceUpdate(b, a);
    expect(t.pendingServiceChanges()).toBe(0);
    const { changes } = t.checkpoint();
    expect(changes.servicePorts.size).toBe(0);
    // Add then delete before any checkpoint: nothing to do at all.
    const c = svc('ns', 'short-lived', { clusterIP: '10.0.0.2', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    t.onServiceAdd(c);
    t.onServiceDelete(c);
    expect(t.checkpoint().changes.deletedUDPClusterIPs.size).toBe(0);
  });

  it('services of another proxy are ignored unless they name us', () => {
    const theirs = svc('ns', 's', {}, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } } });
    const plain = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST });
    plain.onServiceAdd(theirs);
    expect(plain.checkpoint().state.services.size).toBe(0);
    const named = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST, proxyName: 'other' });
    named.onServiceAdd(theirs);
    expect(named.checkpoint().state.services.size).toBe(1);
  });

  it('a ClusterIP service under an IPv6 tracker is invisible', () => {
    const t = new ProxyStateTracker({ ipFamily: 'IPv6', nodeName: HOST });
    t.onServiceAdd(svc('ns', 's', { clusterIP: '10.0.0.1' }));
    expect(t.checkpoint().state.services.size).toBe(0);
  });
});

describe('trigger times', () => {
  const stamp = (iso: string) => ({ annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': iso } });

  it('reports the trigger times of changed services once, under one of their ports', () => {
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST });
    const two = [{ name: 'a', port: 1 }, { name: 'b', port: 2 }];
    t.onEndpointSliceAdd(slice('ns', 'svc', 'svc-1', ['10.0.0.1'], two, stamp('2024-01-01T00:00:01Z')));
    t.onEndpointSliceUpdate(slice('ns', 'svc', 'svc-1', ['10.0.0.1'], two), slice('ns', 'svc', 'svc-1', ['10.0.0.2'], two, stamp('2024-01-01T00:00:02Z')));
    const { changes } = t.checkpoint();
    expect([...changes.lastChangeTriggerTimes]).toEqual([['ns/svc:a/TCP', [Date.UTC(2024, 0, 1, 0, 0, 1), Date.UTC(2024, 0, 1, 0, 0, 2)]]]);
    expect(t.checkpoint().changes.lastChangeTriggerTimes.size).toBe(0);
  });

  it('ignores times from before the tracker started, deletions and reverted changes', () => {
    const clock = testClock(Date.UTC(2024, 0, 1));
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST, clock });
    const old = slice('ns', 'svc', 'svc-1', ['10.0.0.1'], undefined, stamp('2023-12-31T23:00:00Z'));
    t.onEndpointSliceAdd(old);
    expect(t.checkpoint().changes.lastChangeTriggerTimes.size).toBe(0);
    const moved = slice('ns', 'svc', 'svc-1', ['10.0.0.9'], undefined, stamp('2024-01-01T00:00:05Z'));
    t.onEndpointSliceUpdate(old, moved);
    t.onEndpointSliceUpdate(moved, old);
    expect(t.checkpoint().changes.lastChangeTriggerTimes.size).toBe(0);
    t.onEndpointSliceDelete(slice('ns', 'svc', 'svc-1', ['10.0.0.1'], undefined, stamp('2024-01-01T00:00:09Z')));
    const { changes } = t.checkpoint();
    expect(changes.servicePorts.size).toBe(1);
    expect(changes.lastChangeTriggerTimes.size).toBe(0);
  });
});

describe('node and sync state', () => {
  it('follows only its own node; reports label, address and eligibility changes', () => {
    const t = newTracker();
    t.onNodeAdd(v1Node('other-node', { labels: { 'topology.kubernetes.io/zone': 'z9' } }));
    expect(t.checkpoint().state.node.zone).toBeUndefined();

    const n1 = v1Node(HOST, { labels: { 'topology.kubernetes.io/zone': 'z1' }, podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], addresses: ['192.168.1.10', 'fd00::10'] });
    t.onNodeAdd(n1);
    const a = t.checkpoint();
    expect(a.changes.nodeChanged).toBe(true);
    expect(a.state.node).toMatchObject({ name: HOST, zone: 'z1', podCIDRs: ['10.244.1.0/24'], addresses: ['192.168.1.10'], eligible: true });

    t.onNodeUpdate(n1, structuredClone(n1));
    expect(t.checkpoint().changes.nodeChanged).toBe(false);

    const tainted = v1Node(HOST, { labels: { 'topology.kubernetes.io/zone': 'z1' }, podCIDRs: ['10.244.1.0/24'], addresses: ['192.168.1.10'], taints: ['ToBeDeletedByClusterAutoscaler'] });
    t.onNodeUpdate(n1, tainted);
    const b = t.checkpoint();
    expect([b.changes.nodeChanged, b.state.node.eligible]).toEqual([true, false]);

    t.onNodeDelete(tainted);
    const c = t.checkpoint();
    expect([c.changes.nodeChanged, c.state.node.eligible, c.state.node.zone]).toEqual([true, false, undefined]);
  });

  it('is synced once services, slices and the node have all synced', () => {
    const t = newTracker();
    t.onServicesSynced();
    t.onEndpointSlicesSynced();
    expect(t.isSynced()).toBe(false);
    t.onNodeSynced();
    expect(t.isSynced()).toBe(true);
  });

  it('hands out snapshots that later events do not change', () => {
    const t = newTracker();
    const s: V1Service = svc('ns', 's', { clusterIP: '10.0.0.1' });
    t.onServiceAdd(s);
    const first = t.checkpoint().state;
    t.onServiceDelete(s);
    t.checkpoint();
    expect(first.services.size).toBe(1);
  });

  it('counts pending changes per Service and reports them until the checkpoint', () => {
    const t = newTracker();
    t.onEndpointSliceAdd(slice('ns', 'a', 'a-1', ['10.0.0.1']));
    t.onEndpointSliceAdd(slice('ns', 'a', 'a-2', ['10.0.0.2']));
    t.onEndpointSliceAdd(slice('ns', 'b', 'b-1', ['10.0.0.3']));
    expect(t.pendingEndpointChanges()).toBe(2);
    expect(t.hasPendingChanges()).toBe(true);
    t.checkpoint();
    expect([t.pendingEndpointChanges(), t.hasPendingChanges()]).toEqual([0, false]);
  });
});

describe('logging and families', () => {
  it('logs what it drops, with the object and the reason', () => {
    const lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
    const logger = {
      debug: (obj: object | string, msg?: string) => lines.push({ level: 'debug', obj: obj as Record<string, unknown>, msg }),
      info: (obj: object | string, msg?: string) => lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
      warn: (obj: object | string, msg?: string) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
      error: (obj: object | string, msg?: string) => lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
      child: () => logger,
    };
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST, logger });
    t.onServiceAdd(svc('ns', 'bad', { externalIPs: ['nope'] }));
    t.onServiceAdd(svc('ns', 'headless', { clusterIP: 'None' }));
    t.onEndpointSliceAdd(slice('ns', 'bad', 'bad-1', ['10.0.0.1', '10.0.0.999']));
    // Objects of the other family are passed over without a line, as upstream's trackers do.
    t.onServiceAdd(svc('ns', 'v6', { clusterIP: 'fd00:30::5', clusterIPs: ['fd00:30::5'], ipFamilies: ['IPv6'] }));
    t.onEndpointSliceAdd(slice('ns', 'v6', 'v6-1', ['fd00::1'], undefined, { addressType: 'IPv6' }));
    expect(lines).toEqual([
      { level: 'warn', obj: { service: 'ns/bad', ipFamily: 'IPv4', problem: 'externalIP "nope" is not a valid IP address' }, msg: 'Ignoring part of Service' },
      { level: 'debug', obj: { service: 'ns/headless', ipFamily: 'IPv4', reason: 'headless Services are not proxied' }, msg: 'Skipping Service' },
      { level: 'warn', obj: { endpointSlice: 'ns/bad-1', ipFamily: 'IPv4', problem: 'endpoint address "10.0.0.999" is not a valid IP address' }, msg: 'Ignoring part of EndpointSlice' },
    ]);
    expect(t.checkpoint().state.endpoints.get('ns/bad:p80/TCP')?.map((e) => e.hostPort)).toEqual(['10.0.0.1:80']);
  });

  it('an IPv6 tracker takes the IPv6 half of dual-stack objects', () => {
    const t = new ProxyStateTracker({ ipFamily: 'IPv6', nodeName: HOST });
    t.onServiceAdd(svc('ns', 'dual', { clusterIP: '172.30.0.5', clusterIPs: ['172.30.0.5', 'fd00:30::5'], ipFamilies: ['IPv4', 'IPv6'] }));
    t.onEndpointSliceAdd(slice('ns', 'dual', 'dual-v4', ['10.0.0.1']));
    t.onEndpointSliceAdd(slice('ns', 'dual', 'dual-v6', [local('fd00::1')], undefined, { addressType: 'IPv6' }));
    const { state } = t.checkpoint();
    expect(state.services.get('ns/dual:p80/TCP')?.clusterIP).toBe('fd00:30::5');
    expect(state.endpoints.get('ns/dual:p80/TCP')?.map((e) => [e.hostPort, e.isLocal])).toEqual([['[fd00::1]:80', true]]);
  });
});

describe('Service CIDRs', () => {
  const recordingLogger = () => {
    const warnings: unknown[] = [];
    const logger = { debug() {}, info() {}, warn: (obj: object | string, msg?: string) => warnings.push([obj, msg]), error() {}, child: () => logger };
    return { logger, warnings };
  };

  it("keeps this family's valid CIDRs, canonical and sorted, and reports a change once", () => {
    const { logger, warnings } = recordingLogger();
    const v4 = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: HOST, logger });
    const v6 = new ProxyStateTracker({ ipFamily: 'IPv6', nodeName: HOST });
    const cidrs = ['10.96.0.0/16', 'FD00:10:96::/112', '172.30.0.1/16', 'not-a-cidr', '10.96.0.0/16', '10.0.0.1'];
    v4.onServiceCIDRsChanged(cidrs);
    v6.onServiceCIDRsChanged(cidrs);
    expect(v4.hasPendingChanges()).toBe(true);
    const a = v4.checkpoint();
    expect(a.state.serviceCIDRs).toEqual(['10.96.0.0/16', '172.30.0.0/16']);
    expect(a.changes.serviceCIDRsChanged).toBe(true);
    expect(v6.checkpoint().state.serviceCIDRs).toEqual(['fd00:10:96::/112']);
    // Neither a plain address nor garbage is a CIDR; each is logged once, however often it comes.
    v4.onServiceCIDRsChanged(cidrs);
    expect(warnings).toEqual([
      [{ cidr: 'not-a-cidr', ipFamily: 'IPv4' }, 'Ignoring invalid ServiceCIDR'],
      [{ cidr: '10.0.0.1', ipFamily: 'IPv4' }, 'Ignoring invalid ServiceCIDR'],
    ]);
    // The same set in another order or spelling is no change.
    v4.onServiceCIDRsChanged(['172.30.0.0/16', '10.96.0.0/16']);
    expect(v4.hasPendingChanges()).toBe(false);
    expect(v4.checkpoint().changes.serviceCIDRsChanged).toBe(false);
  });

  it('follows removals until none is left, and ignores the other family moving', () => {
    const t = newTracker();
    expect(t.checkpoint().state.serviceCIDRs).toEqual([]);
    t.onServiceCIDRsChanged(['10.96.0.0/16', '10.100.0.0/16']);
    t.checkpoint();
    t.onServiceCIDRsChanged(['10.96.0.0/16', 'fd00::/108']);
    const a = t.checkpoint();
    expect([a.changes.serviceCIDRsChanged, a.state.serviceCIDRs]).toEqual([true, ['10.96.0.0/16']]);
    t.onServiceCIDRsChanged(['10.96.0.0/16']);
    expect(t.hasPendingChanges()).toBe(false);
    t.onServiceCIDRsChanged([]);
    const b = t.checkpoint();
    expect([b.changes.serviceCIDRsChanged, b.state.serviceCIDRs]).toEqual([true, []]);
    // Other changes do not carry the flag.
    t.onServiceAdd(svc('ns', 's', { clusterIP: '10.96.0.5' }));
    expect(t.checkpoint().changes.serviceCIDRsChanged).toBe(false);
  });
});
