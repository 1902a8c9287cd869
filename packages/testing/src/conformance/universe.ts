// A small universe of Services, EndpointSlices and one Node, and seeded random event sequences
// over it. Small on purpose: few names means the same objects are added, changed and deleted
// many times, which is where partial syncs go wrong.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { IPFamily, NodeInfo } from '@kube-proxy-ts/core';
import { service, type ServiceOptions, type ServicePortInput } from '../builders/service.js';
import { endpointSlice, type EndpointInput, type EndpointPortInput } from '../builders/endpoint-slice.js';
import { node } from '../builders/node.js';

export const CONFORMANCE_NAMESPACE = 'conformance';

/** A deterministic PRNG (mulberry32): the same seed gives the same sequence everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the API server holds at one moment; keys are object names. */
export interface World {
  readonly services: Map<string, V1Service>;
  readonly slices: Map<string, V1EndpointSlice>;
  node: V1Node;
  /** The union of the cluster's ServiceCIDRs. */
  serviceCIDRs: readonly string[];
}

export type ConformanceEvent =
  | { readonly kind: 'upsertService'; readonly object: V1Service }
  | { readonly kind: 'deleteService'; readonly name: string }
  | { readonly kind: 'upsertSlice'; readonly object: V1EndpointSlice }
  | { readonly kind: 'deleteSlice'; readonly name: string }
  | { readonly kind: 'updateNode'; readonly object: V1Node }
  | { readonly kind: 'setServiceCIDRs'; readonly cidrs: readonly string[] };

/** One line per event, for failure messages that let a reader replay the sequence. */
export function describeEvent(e: ConformanceEvent): string {
  switch (e.kind) {
    case 'upsertService': {
      const s = e.object.spec!;
      const ports = (s.ports ?? []).map((p) => `${p.name ?? ''}:${p.port}/${p.protocol}`).join(',');
      return `service ${e.object.metadata!.name} ${s.type} [${ports}] etp=${s.externalTrafficPolicy ?? '-'} itp=${s.internalTrafficPolicy} affinity=${s.sessionAffinity}`;
    }
    case 'deleteService':
      return `delete service ${e.name}`;
    case 'upsertSlice': {
      const eps = (e.object.endpoints ?? []).map((ep) => {
        const c = ep.conditions ?? {};
        const flags = `${c.ready ? 'R' : ''}${c.serving ? 'S' : ''}${c.terminating ? 'T' : ''}`;
        return `${ep.addresses[0]}(${flags || '-'}@${ep.nodeName ?? '?'})`;
      });
      const ports = (e.object.ports ?? []).map((p) => `${p.name ?? ''}=${p.port}`).join(',');
      return `slice ${e.object.metadata!.name} ports [${ports}] endpoints [${eps.join(' ')}]`;
    }
    case 'deleteSlice':
      return `delete slice ${e.name}`;
    case 'updateNode':
      return `node zone=${e.object.metadata?.labels?.['topology.kubernetes.io/zone'] ?? '-'}`;
    case 'setServiceCIDRs':
      return `service CIDRs [${e.cidrs.join(' ')}]`;
  }
}

interface Addresses {
  /** Ranges that hold the ClusterIPs, and one that does not. */
  serviceCIDRs: readonly string[];
  clusterIP(i: number): string;
  endpoint(n: number): string;
  externalIP(i: number): string;
  lbIngress(i: number): string;
  sourceRange: string;
}

function addressesOf(family: IPFamily): Addresses {
  return family === 'IPv4'
    ? {
        serviceCIDRs: ['172.30.0.0/16', '10.96.0.0/12'],
        clusterIP: (i) => `172.30.10.${i + 1}`,
        endpoint: (n) => `10.180.0.${n}`,
        externalIP: (i) => `192.168.99.${i + 1}`,
        lbIngress: (i) => `5.6.7.${i + 1}`,
        sourceRange: '203.0.113.0/24',
      }
    : {
        serviceCIDRs: ['fd00:30::/108', 'fd00:96::/112'],
        clusterIP: (i) => `fd00:30::a:${i + 1}`,
        endpoint: (n) => `fd00:180::${n}`,
        externalIP: (i) => `fd00:99::${i + 1}`,
        lbIngress: (i) => `fd00:5:6:7::${i + 1}`,
        sourceRange: '2001:db8::/64',
      };
}

interface ServiceShape {
  readonly name: string;
  /** Every port the service may have; each variant uses a prefix or subset. */
  readonly ports: readonly (ServicePortInput & { endpointPort: number })[];
  variant(rnd: () => number, i: number, addr: Addresses): ServiceOptions;
}

const pick = <T>(rnd: () => number, items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
const chance = (rnd: () => number, p: number) => rnd() < p;

// Four services covering the features backends program differently.
const SHAPES: readonly ServiceShape[] = [
  {
    name: 'web',
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', endpointPort: 8080 },
      { name: 'https', port: 443, targetPort: 8443, protocol: 'TCP', endpointPort: 8443 },
    ],
    variant: (rnd) => ({
      sessionAffinity: chance(rnd, 0.3) ? 'ClientIP' : 'None',
      internalTrafficPolicy: chance(rnd, 0.3) ? 'Local' : 'Cluster',
      ...(chance(rnd, 0.5) ? { trafficDistribution: 'PreferClose' } : {}),
    }),
  },
  {
    name: 'dns',
    ports: [
      { name: 'dns-udp', port: 53, protocol: 'UDP', endpointPort: 5353, targetPort: 5353, nodePort: 30053 },
      { name: 'dns-tcp', port: 53, protocol: 'TCP', endpointPort: 5353, targetPort: 5353, nodePort: 30054 },
    ],
    variant: (rnd) => {
      const local = chance(rnd, 0.4);
      return {
        type: 'NodePort',
        externalTrafficPolicy: local ? 'Local' : 'Cluster',
        ...(local ? { healthCheckNodePort: 32001 } : {}),
      };
    },
  },
  {
    name: 'lb',
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', endpointPort: 8080, nodePort: 30080 }],
    variant: (rnd, i, addr) => ({
      type: 'LoadBalancer',
      externalIPs: chance(rnd, 0.5) ? [addr.externalIP(i)] : [],
      loadBalancerIngress: chance(rnd, 0.7) ? [addr.lbIngress(i)] : [],
      ...(chance(rnd, 0.4) ? { loadBalancerSourceRanges: [addr.sourceRange] } : {}),
      ...(chance(rnd, 0.3) ? { trafficDistribution: 'PreferClose' } : {}),
    }),
  },
  {
    name: 'stats',
    // A single unnamed port: its ServicePortName has port "".
    ports: [{ port: 8125, protocol: 'UDP', endpointPort: 8125 }],
    variant: (rnd) => ({
      ...(chance(rnd, 0.6) ? { annotations: { 'service.kubernetes.io/topology-mode': 'Auto' } } : {}),
    }),
  },
];

const SLICES_PER_SERVICE = 2;
const ENDPOINTS_PER_SLICE = 3;

export interface UniverseOptions {
  readonly ipFamily: IPFamily;
  /** The node the backend runs on (endpoints on it are local). */
  readonly node: NodeInfo;
}

/** Builds objects and random events for one IP family. */
export class Universe {
  private readonly addr: Addresses;
  readonly nodeName: string;

  constructor(private readonly options: UniverseOptions) {
    this.addr = addressesOf(options.ipFamily);
    this.nodeName = options.node.name;
  }

  emptyWorld(): World {
    return { services: new Map(), slices: new Map(), node: this.nodeObject(this.options.node.zone), serviceCIDRs: [] };
  }

  nodeObject(zone: string | undefined): V1Node {
    const n = this.options.node;
    const labels = { ...n.labels };
    delete labels['topology.kubernetes.io/zone'];
    return node(n.name, {
      labels,
      ...(zone !== undefined ? { zone } : {}),
      podCIDRs: [...n.podCIDRs],
      addresses: [...n.addresses],
    });
  }

  /** Service `i` of the universe in a random variant (sometimes with its first port only). */
  service(i: number, rnd: () => number): V1Service {
    const shape = SHAPES[i]!;
    const ports = shape.ports.length > 1 && chance(rnd, 0.25) ? shape.ports.slice(0, 1) : shape.ports;
    return service(CONFORMANCE_NAMESPACE, shape.name, {
      clusterIP: this.addr.clusterIP(i),
      ipFamily: this.options.ipFamily,
      ...shape.variant(rnd, i, this.addr),
      ports: ports.map(({ endpointPort: _unused, ...p }) => p),
    });
  }

  /** Service `i` with every port and no optional feature, for targeted checks. */
  plainService(i: number): V1Service {
    return this.service(i, () => 0.99);
  }

  /** Slice `j` of service `i`; endpoints come from a pool private to that slice. */
  slice(i: number, j: number, rnd: () => number): V1EndpointSlice {
    const shape = SHAPES[i]!;
    const ports: EndpointPortInput[] = shape.ports
      .filter((_p, k) => k === 0 || chance(rnd, 0.8))
      .map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.endpointPort, protocol: p.protocol ?? 'TCP' }));
    const endpoints: EndpointInput[] = [];
    // The EndpointSlice controller hints either every endpoint of a slice or none.
    const hinted = chance(rnd, 0.8);
    for (let k = 1; k <= ENDPOINTS_PER_SLICE; k++) {
      if (!chance(rnd, 0.6)) continue;
      const n = i * 10 + j * ENDPOINTS_PER_SLICE + k;
      const state = pick(rnd, ['ready', 'ready', 'ready', 'ready', 'terminating-serving', 'terminating', 'not-ready'] as const);
      const zone = pick(rnd, ['zone-a', 'zone-b']);
      endpoints.push({
        ip: this.addr.endpoint(n),
        ready: state === 'ready',
        serving: state === 'ready' || state === 'terminating-serving',
        terminating: state === 'terminating-serving' || state === 'terminating',
        nodeName: chance(rnd, 0.5) ? this.nodeName : 'other-node',
        zone,
        ...(hinted ? { zoneHints: [zone] } : {}),
      });
    }
    return endpointSlice(CONFORMANCE_NAMESPACE, shape.name, `${shape.name}-${j}`, {
      addressType: this.options.ipFamily,
      endpoints,
      ports,
    });
  }

  /** A slice with every endpoint ready and local, for targeted checks. */
  plainSlice(i: number): V1EndpointSlice {
    return this.slice(i, 0, () => 0);
  }

  get serviceCount(): number {
    return SHAPES.length;
  }

  /** One random event that changes `world` (applied to it by the caller). */
  randomEvent(world: World, rnd: () => number): ConformanceEvent {
    const r = rnd();
    if (r < 0.08) {
      const zone = world.node.metadata?.labels?.['topology.kubernetes.io/zone'] === 'zone-a' ? 'zone-b' : 'zone-a';
      return { kind: 'updateNode', object: this.nodeObject(zone) };
    }
    const i = Math.floor(rnd() * SHAPES.length);
    const shape = SHAPES[i]!;
    if (r < 0.45) {
      if (world.services.has(shape.name) && chance(rnd, 0.35)) return { kind: 'deleteService', name: shape.name };
      return { kind: 'upsertService', object: this.service(i, rnd) };
    }
    if (r >= 0.97) {
      // None, one range, or two (the ClusterIPs' and another): cluster-ips-check follows them.
      const all = addressesOf(this.options.ipFamily).serviceCIDRs;
      return { kind: 'setServiceCIDRs', cidrs: all.slice(0, Math.floor(rnd() * (all.length + 1))) };
    }
    const j = Math.floor(rnd() * SLICES_PER_SERVICE);
    const name = `${shape.name}-${j}`;
    if (world.slices.has(name) && chance(rnd, 0.35)) return { kind: 'deleteSlice', name };
    return { kind: 'upsertSlice', object: this.slice(i, j, rnd) };
  }
}
