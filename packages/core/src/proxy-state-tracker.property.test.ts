// Property: whatever sequence of events arrives, with checkpoints anywhere in between,
// incremental tracking ends in the state a fresh tracker builds from the final objects; and
// every checkpoint's ChangeSet names exactly the service ports whose records moved.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ProxyState } from './contract.js';
import { deepEqual } from './deep-equal.js';
import type { IPFamily } from './model.js';
import { ProxyStateTracker } from './proxy-state-tracker.js';

const NODE = 'node-a';
const SERVICES = ['s1', 's2', 's3'];
const SLICES = ['a', 'b'];
const PORTS = [
  { name: 'http', port: 80, protocol: 'TCP' as const },
  { name: 'dns', port: 53, protocol: 'UDP' as const },
  { name: '', port: 8080, protocol: 'TCP' as const },
  { name: 'bad', port: 0, protocol: 'TCP' as const },
];
const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.10', 'fd00::1', 'fd00::2', 'not-an-ip'];

const serviceArb = (name: string): fc.Arbitrary<V1Service> =>
  fc
    .record({
      type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'),
      ips: fc.constantFrom(['172.30.0.1'], ['fd00:30::1'], ['172.30.0.2', 'fd00:30::2'], ['None']),
      ports: fc.subarray(PORTS, { minLength: 0, maxLength: 3 }),
      etpLocal: fc.boolean(),
      itpLocal: fc.boolean(),
      affinity: fc.boolean(),
      externalIPs: fc.subarray(['192.0.2.1', '2001:db8::5', 'bogus']),
      ingress: fc.subarray(['198.51.100.1', '198.51.100.2']),
      otherProxy: fc.boolean(),
    })
    .map((o): V1Service => ({
      metadata: { namespace: 'ns', name, ...(o.otherProxy ? { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } } : {}) },
      spec: {
        type: o.type,
        clusterIP: o.ips[0],
        clusterIPs: [...o.ips],
        ipFamilies: o.ips[0] === 'None' ? undefined : o.ips.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
        ports: o.ports.map((p, i) => ({ ...p, nodePort: o.type === 'ClusterIP' ? undefined : 30000 + i })),
        externalTrafficPolicy: o.etpLocal ? 'Local' : 'Cluster',
        internalTrafficPolicy: o.itpLocal ? 'Local' : 'Cluster',
        healthCheckNodePort: o.etpLocal && o.type === 'LoadBalancer' ? 32000 : undefined,
        sessionAffinity: o.affinity ? 'ClientIP' : 'None',
        externalIPs: o.externalIPs,
      },
      status: { loadBalancer: { ingress: o.ingress.map((ip) => ({ ip })) } },
    }));

const endpointArb = fc.record({
  ip: fc.constantFrom(...IPS),
  ready: fc.option(fc.boolean(), { nil: undefined }),
  serving: fc.option(fc.boolean(), { nil: undefined }),
  terminating: fc.option(fc.boolean(), { nil: undefined }),
  nodeName: fc.constantFrom(NODE, 'node-b', undefined),
  zoneHints: fc.option(fc.subarray(['z1', 'z2'], { minLength: 1 }), { nil: undefined }),
});

const sliceArb = (service: string, slice: string): fc.Arbitrary<V1EndpointSlice> =>
  fc
    .record({
      addressType: fc.constantFrom('IPv4', 'IPv4', 'IPv6', 'FQDN'),
      endpoints: fc.array(endpointArb, { maxLength: 4 }),
      ports: fc.subarray(PORTS, { maxLength: 3 }),
      trigger: fc.option(fc.integer({ min: 1_700_000_000, max: 1_800_000_000 }), { nil: undefined }),
    })
    .map((o): V1EndpointSlice => ({
      metadata: {
        namespace: 'ns',
        name: `${service}-${slice}`,
        labels: { 'kubernetes.io/service-name': service },
        annotations: o.trigger ? { 'endpoints.kubernetes.io/last-change-trigger-time': new Date(o.trigger * 1000).toISOString() } : ({} as Record<string, string>),
      },
      addressType: o.addressType,
      endpoints: o.endpoints.map((e) => ({
        addresses: [e.ip],
        conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
        nodeName: e.nodeName,
        hints: e.zoneHints ? { forZones: e.zoneHints.map((name) => ({ name })) } : undefined,
      })),
      ports: o.ports,
    }));

const nodeArb: fc.Arbitrary<V1Node> = fc
  .record({ zone: fc.constantFrom('z1', 'z2', undefined), tainted: fc.boolean(), addr: fc.constantFrom('192.168.0.1', '192.168.0.2') })
  .map((o): V1Node => ({
    metadata: { name: NODE, labels: o.zone ? { 'topology.kubernetes.io/zone': o.zone } : ({} as Record<string, string>) },
    spec: { podCIDRs: ['10.244.0.0/24', 'fd00:244::/64'], taints: o.tainted ? [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] : [] },
    status: { addresses: [{ type: 'InternalIP', address: o.addr }] },
  }));

type Event =
  | { kind: 'service'; name: string; obj: V1Service | null }
  | { kind: 'slice'; name: string; obj: V1EndpointSlice | null }
  | { kind: 'node'; obj: V1Node }
  | { kind: 'checkpoint' };

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  fc.constantFrom(...SERVICES).chain((name) => fc.option(serviceArb(name), { nil: null, freq: 4 }).map((obj): Event => ({ kind: 'service', name, obj }))),
  fc
    .tuple(fc.constantFrom(...SERVICES), fc.constantFrom(...SLICES))
    .chain(([svc, s]) => fc.option(sliceArb(svc, s), { nil: null, freq: 4 }).map((obj): Event => ({ kind: 'slice', name: `${svc}-${s}`, obj }))),
  nodeArb.map((obj): Event => ({ kind: 'node', obj })),
  fc.constant<Event>({ kind: 'checkpoint' }),
);

interface World {
  services: Map<string, V1Service>;
  slices: Map<string, V1EndpointSlice>;
  node?: V1Node;
}

/** Feeds `e` to the tracker as an informer would, and updates the world. */
function apply(t: ProxyStateTracker, w: World, e: Exclude<Event, { kind: 'checkpoint' }>): void {
  if (e.kind === 'node') {
    if (w.node) t.onNodeUpdate(w.node, e.obj);
    else t.onNodeAdd(e.obj);
    w.node = e.obj;
    return;
  }
  const store = (e.kind === 'service' ? w.services : w.slices) as Map<string, V1Service | V1EndpointSlice>;
  const old = store.get(e.name);
  const on = e.kind === 'service'
    ? { add: (o: unknown) => t.onServiceAdd(o as V1Service), update: (a: unknown, b: unknown) => t.onServiceUpdate(a as V1Service, b as V1Service), del: (o: unknown) => t.onServiceDelete(o as V1Service) }
    : { add: (o: unknown) => t.onEndpointSliceAdd(o as V1EndpointSlice), update: (a: unknown, b: unknown) => t.onEndpointSliceUpdate(a as V1EndpointSlice, b as V1EndpointSlice), del: (o: unknown) => t.onEndpointSliceDelete(o as V1EndpointSlice) };
  if (e.obj === null) {
    if (old) on.del(old);
    store.delete(e.name);
  } else {
    if (old) on.update(old, e.obj);
    else on.add(e.obj);
    store.set(e.name, e.obj);
  }
}

function plain(s: ProxyState) {
  return { services: Object.fromEntries(s.services), endpoints: Object.fromEntries(s.endpoints), node: s.node };
}

function movedKeys(a: ProxyState, b: ProxyState): string[] {
  const keys = new Set([...a.services.keys(), ...b.services.keys(), ...a.endpoints.keys(), ...b.endpoints.keys()]);
  return [...keys].filter((k) => !deepEqual(a.services.get(k), b.services.get(k)) || !deepEqual(a.endpoints.get(k) ?? [], b.endpoints.get(k) ?? [])).sort();
}

describe.each<IPFamily>(['IPv4', 'IPv6'])('incremental tracking (%s)', (family) => {
  it('ends where a fresh tracker built from the final objects starts, with exact ChangeSets on the way', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 40 }), (events) => {
        const world: World = { services: new Map(), slices: new Map() };
        const tracker = new ProxyStateTracker({ ipFamily: family, nodeName: NODE });
        let previous = tracker.checkpoint().state;
        const check = () => {
          const { state, changes } = tracker.checkpoint();
          expect([...changes.servicePorts].sort()).toEqual(movedKeys(previous, state));
          expect(changes.nodeChanged).toBe(!deepEqual(previous.node, state.node));
          previous = state;
        };
        for (const e of events) {
          if (e.kind === 'checkpoint') check();
          else apply(tracker, world, e);
        }
        check();

        const fresh = new ProxyStateTracker({ ipFamily: family, nodeName: NODE });
        if (world.node) fresh.onNodeAdd(world.node);
        for (const s of world.services.values()) fresh.onServiceAdd(s);
        for (const s of world.slices.values()) fresh.onEndpointSliceAdd(s);
        expect(plain(previous)).toEqual(plain(fresh.checkpoint().state));
      }),
      { numRuns: 300 },
    );
  });
});
