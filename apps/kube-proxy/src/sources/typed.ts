// One shape for every object a handler sees. Lists, watch events and manifest files (JSON or
// YAML) all become the same compact object: the fields a proxy reads, nothing else. Sources keep
// one of these per object for as long as it exists, so what they drop (managedFields,
// last-applied-configuration, status conditions, timestamps, ...) is memory saved on every node.
// Timestamps that are kept (a Node's deletionTimestamp) stay the strings the API sent: the proxy
// only asks whether one is set.

import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import type { ProxiedKind } from './kinds.js';

/** The annotations a proxy reads; all others are dropped. */
const ANNOTATIONS: Record<'Service' | 'EndpointSlice', readonly string[]> = {
  Service: ['service.kubernetes.io/topology-mode', 'service.kubernetes.io/topology-aware-hints'],
  EndpointSlice: ['endpoints.kubernetes.io/last-change-trigger-time'],
};

const SERVICE_SPEC = [
  'type',
  'clusterIP',
  'clusterIPs',
  'ipFamilies',
  'ports',
  'externalIPs',
  'loadBalancerSourceRanges',
  'sessionAffinity',
  'sessionAffinityConfig',
  'externalTrafficPolicy',
  'internalTrafficPolicy',
  'healthCheckNodePort',
  'trafficDistribution',
] as const;
const SERVICE_PORT = ['name', 'protocol', 'port', 'targetPort', 'nodePort'] as const;
const SLICE_PORT = ['name', 'protocol', 'port'] as const;
const ENDPOINT = ['addresses', 'conditions', 'nodeName', 'zone', 'hints'] as const;
const CONDITIONS = ['ready', 'serving', 'terminating'] as const;

export function toTyped(kind: 'Service', raw: unknown): V1Service;
export function toTyped(kind: 'EndpointSlice', raw: unknown): V1EndpointSlice;
export function toTyped(kind: 'Node', raw: unknown): V1Node;
export function toTyped(kind: 'ServiceCIDR', raw: unknown): V1ServiceCIDR;
export function toTyped(kind: ProxiedKind, raw: unknown): KubernetesObject;
export function toTyped(kind: ProxiedKind, raw: unknown): KubernetesObject {
  if (kind === 'Service') return compactService(raw);
  if (kind === 'EndpointSlice') return compactEndpointSlice(raw);
  if (kind === 'Node') return compactNode(raw);
  return compactServiceCIDR(raw);
}

/**
 * What a source keeps of an object it has handed over, to pass as the previous or deleted object
 * later: an EndpointSlice without its endpoints and ports (the trackers hold those, converted);
 * the other kinds whole.
 */
export function keptOf(kind: ProxiedKind): ((obj: KubernetesObject) => KubernetesObject) | undefined {
  if (kind !== 'EndpointSlice') return undefined;
  return (obj) => {
    const slice = obj as V1EndpointSlice;
    return { apiVersion: slice.apiVersion, kind: slice.kind, metadata: slice.metadata, addressType: slice.addressType } as V1EndpointSlice;
  };
}

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The listed fields of `from` that are set; anything else (a wrong type included) is left as it is for the checks downstream. */
function pick(from: unknown, fields: readonly string[]): Plain | undefined {
  if (!isPlain(from)) return from as undefined;
  const out: Plain = {};
  for (const f of fields) if (from[f] !== undefined && from[f] !== null) out[f] = from[f];
  return out;
}

function pickEach(list: unknown, fields: readonly string[]): unknown {
  return Array.isArray(list) ? list.map((x) => pick(x, fields) ?? x) : list;
}

const METADATA = ['name', 'namespace', 'resourceVersion', 'labels'] as const;

function metadataOf(raw: Plain, kind: 'Service' | 'EndpointSlice'): Plain {
  const m = isPlain(raw.metadata) ? raw.metadata : {};
  const out = pick(m, METADATA) as Plain;
  if (isPlain(m.annotations)) {
    let kept: Record<string, unknown> | undefined;
    for (const a of ANNOTATIONS[kind]) if (m.annotations[a] !== undefined) (kept ??= {})[a] = m.annotations[a];
    if (kept) out.annotations = kept;
  }
  return out;
}

function compactService(raw: unknown): V1Service {
  if (!isPlain(raw)) throw new TypeError('a Service must be an object');
  const spec = pick(raw.spec, SERVICE_SPEC);
  if (spec) spec.ports = pickEach(spec.ports, SERVICE_PORT);
  const ingress = isPlain(raw.status) && isPlain(raw.status.loadBalancer) ? raw.status.loadBalancer.ingress : undefined;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadataOf(raw, 'Service'),
    ...(spec !== undefined ? { spec } : {}),
    ...(Array.isArray(ingress) ? { status: { loadBalancer: { ingress: pickEach(ingress, ['ip', 'ipMode']) } } } : {}),
  } as V1Service;
}

/** Conditions, node names and zones repeat across a cluster's endpoints: each distinct one is kept once. */
const shared = new Map<string, unknown>();
const MAX_SHARED = 50_000;

function share<T>(key: string, make: () => T): T {
  let v = shared.get(key) as T | undefined;
  if (v === undefined) {
    // Bounded: a cluster has far fewer nodes and zones; past this, start over rather than grow.
    if (shared.size >= MAX_SHARED) shared.clear();
    v = make();
    shared.set(key, v);
  }
  return v;
}

function compactEndpoint(ep: unknown): unknown {
  const out = pick(ep, ENDPOINT);
  if (!out) return ep;
  const c = out.conditions;
  if (isPlain(c)) {
    const kept = pick(c, CONDITIONS) as Plain;
    // Frozen, since every endpoint with these conditions holds the same object.
    if (CONDITIONS.every((k) => kept[k] === undefined || typeof kept[k] === 'boolean')) out.conditions = share(`c:${kept.ready}:${kept.serving}:${kept.terminating}`, () => Object.freeze(kept));
    else out.conditions = kept;
  }
  if (typeof out.nodeName === 'string') out.nodeName = share(`n:${out.nodeName}`, () => out.nodeName);
  if (typeof out.zone === 'string') out.zone = share(`z:${out.zone}`, () => out.zone);
  return out;
}

function compactEndpointSlice(raw: unknown): V1EndpointSlice {
  if (!isPlain(raw)) throw new TypeError('an EndpointSlice must be an object');
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: metadataOf(raw, 'EndpointSlice'),
    addressType: raw.addressType,
    endpoints: Array.isArray(raw.endpoints) ? raw.endpoints.map(compactEndpoint) : raw.endpoints,
    ...(raw.ports !== undefined && raw.ports !== null ? { ports: pickEach(raw.ports, SLICE_PORT) } : {}),
  } as V1EndpointSlice;
}

/** A Node: its name, labels (topology), deletion, pod CIDRs and addresses. */
function compactNode(raw: unknown): V1Node {
  if (!isPlain(raw)) throw new TypeError('a Node must be an object');
  const metadata = pick(isPlain(raw.metadata) ? raw.metadata : {}, [...METADATA, 'deletionTimestamp']);
  const spec = pick(raw.spec, ['podCIDR', 'podCIDRs']);
  const addresses = isPlain(raw.status) ? raw.status.addresses : undefined;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata,
    ...(spec !== undefined ? { spec } : {}),
    ...(addresses !== undefined && addresses !== null ? { status: { addresses: pickEach(addresses, ['type', 'address']) } } : {}),
  } as V1Node;
}

/** A ServiceCIDR: its name and CIDRs. */
function compactServiceCIDR(raw: unknown): V1ServiceCIDR {
  if (!isPlain(raw)) throw new TypeError('a ServiceCIDR must be an object');
  const spec = pick(raw.spec, ['cidrs']);
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'ServiceCIDR',
    metadata: pick(isPlain(raw.metadata) ? raw.metadata : {}, METADATA),
    ...(spec !== undefined ? { spec } : {}),
  } as V1ServiceCIDR;
}
