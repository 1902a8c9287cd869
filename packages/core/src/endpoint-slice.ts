// V1EndpointSlice -> Endpoint records per service port, and the merge of all slices of one
// Service (a Service's endpoints may be spread over many slices and move between them).

import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { isValidPort, joinHostPort, parseIP } from './ip.js';
import type { Endpoint, IPFamily, ServicePortKey, ServicePortName } from './model.js';
import { LABEL_HEADLESS, belongsToOtherProxy, isProtocol, servicePortKey } from './service-port.js';
import { invalidValueMessage, validateDNS1123Label, validateDNS1123Subdomain, validateLabelValue } from './validation.js';

/** Label naming the Service an EndpointSlice belongs to. */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
/** Annotation with the time of the change that triggered this slice's last update (RFC 3339). */
export const ANNOTATION_LAST_CHANGE_TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface EndpointSliceOptions {
  /** This node's name: endpoints on it are local. */
  readonly nodeName: string;
  /** This proxy's name for the service-proxy-name label. */
  readonly proxyName?: string;
}

/** The endpoints of one service port, as far as one slice knows them. */
export interface SliceServicePort {
  readonly name: ServicePortName;
  readonly key: ServicePortKey;
  readonly endpoints: readonly Endpoint[];
}

export interface EndpointSliceConversion {
  /** `namespace/service`, when the slice names its Service. */
  readonly service?: string;
  /** `namespace/slice-name`. */
  readonly slice: string;
  /** One entry per usable slice port, sorted by key. Empty when skipped. */
  readonly ports: readonly SliceServicePort[];
  /** Why the whole slice is ignored. */
  readonly skipped?: string;
  /** Skipped only because its addresses are of the other IP family: that family's tracker has it; not worth a log line. */
  readonly otherFamily?: boolean;
  /** Why the whole slice is refused: the API server would have rejected it (bad names). */
  readonly invalid?: string;
  /** Parts that were dropped, one readable sentence each. */
  readonly problems: string[];
  /** Annotation endpoints.kubernetes.io/last-change-trigger-time, ms since epoch. */
  readonly lastChangeTriggerTime?: number;
}

function sliceName(slice: V1EndpointSlice): string {
  return `${slice.metadata?.namespace ?? ''}/${slice.metadata?.name ?? ''}`;
}

/** Endpoint order as upstream's: by the `ip:port` string. */
export function compareEndpoints(a: Endpoint, b: Endpoint): number {
  return a.hostPort < b.hostPort ? -1 : a.hostPort > b.hostPort ? 1 : 0;
}

function names(list: readonly { name?: string }[] | undefined): readonly string[] | undefined {
  const out = (list ?? []).map((h) => h.name).filter((n): n is string => typeof n === 'string' && n !== '');
  return out.length > 0 ? Object.freeze([...new Set(out)].sort()) : undefined;
}

function toEndpoint(ep: V1Endpoint, ip: string, port: number, nodeName: string): Endpoint {
  const c = ep.conditions ?? {};
  return Object.freeze({
    ip,
    port,
    hostPort: joinHostPort(ip, port),
    // Unknown readiness counts as ready, as the API documents.
    ready: c.ready ?? true,
    serving: c.serving ?? true,
    terminating: c.terminating ?? false,
    nodeName: ep.nodeName || undefined,
    zone: ep.zone || undefined,
    zoneHints: names(ep.hints?.forZones),
    nodeHints: names(ep.hints?.forNodes),
    isLocal: nodeName !== '' && ep.nodeName === nodeName,
  });
}

/** Parses the RFC 3339 trigger-time annotation; undefined when absent or malformed. */
export function parseTriggerTime(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : undefined;
}

/**
 * The endpoints a proxy of `family` takes from one EndpointSlice, per slice port. Endpoints with
 * a bad or other-family address and ports without a valid number are dropped with a reason.
 */
export function endpointSliceToEndpoints(slice: V1EndpointSlice, family: IPFamily, opts: EndpointSliceOptions): EndpointSliceConversion {
  const problems: string[] = [];
  const labels = slice.metadata?.labels;
  const namespace = slice.metadata?.namespace ?? '';
  const serviceName = labels?.[LABEL_SERVICE_NAME];
  const base = { slice: sliceName(slice), problems };
  const none = (skipped: string, service?: string, otherFamily = false): EndpointSliceConversion => ({
    ...base,
    ...(service ? { service } : {}),
    ports: [],
    skipped,
    ...(otherFamily ? { otherFamily } : {}),
  });
  const badNamespace = validateDNS1123Label(namespace);
  if (badNamespace) return { ...base, ports: [], invalid: invalidValueMessage('namespace', namespace, badNamespace) };
  if (serviceName === undefined || serviceName === '') return none(`the EndpointSlice has no ${LABEL_SERVICE_NAME} label`);
  const badServiceName = validateLabelValue(serviceName);
  if (badServiceName) return { ...base, ports: [], invalid: invalidValueMessage(`label ${LABEL_SERVICE_NAME}`, serviceName, badServiceName) };
  const service = `${namespace}/${serviceName}`;
  // With a valid Service, the slice is forgotten there (as a delete) rather than left behind.
  const badSliceName = validateDNS1123Subdomain(slice.metadata?.name ?? '');
  if (badSliceName) return { ...base, service, ports: [], invalid: invalidValueMessage('name', slice.metadata?.name ?? '', badSliceName) };
  // Port names are part of ServicePortName, as the Service's: a bad one refuses the whole slice.
  for (const p of Array.isArray(slice.ports) ? slice.ports : []) {
    const portName: unknown = p?.name ?? '';
    const badPortName = portName === '' ? undefined : validateDNS1123Label(portName);
    if (badPortName) return { ...base, service, ports: [], invalid: invalidValueMessage('port name', portName, badPortName) };
  }
  if (belongsToOtherProxy(labels, opts.proxyName)) return none('the EndpointSlice belongs to another proxy', service);
  if (labels?.[LABEL_HEADLESS] !== undefined) return none('the EndpointSlice belongs to a headless Service', service);
  if (slice.addressType !== family) return none(`addressType ${slice.addressType} is not ${family}`, service, slice.addressType === 'IPv4' || slice.addressType === 'IPv6');

  const endpoints: { ep: V1Endpoint; ip: string }[] = [];
  for (const ep of Array.isArray(slice.endpoints) ? slice.endpoints : []) {
    if (!ep || typeof ep !== 'object') {
      problems.push(`endpoint ${JSON.stringify(ep)} is not an endpoint object`);
      continue;
    }
    const raw = ep.addresses?.[0];
    const ip = parseIP(raw);
    if (!ip) {
      problems.push(`endpoint address ${JSON.stringify(raw ?? null)} is not a valid IP address`);
      continue;
    }
    if (ip.family !== family) {
      problems.push(`endpoint address ${raw} is not ${family}`);
      continue;
    }
    endpoints.push({ ep, ip: ip.text });
  }

  const ports: SliceServicePort[] = [];
  const seen = new Set<string>();
  for (const p of Array.isArray(slice.ports) ? slice.ports : []) {
    if (!p || typeof p !== 'object') {
      problems.push(`port ${JSON.stringify(p)} is not a port object`);
      continue;
    }
    const portName = p.name ?? '';
    const protocol = p.protocol ?? 'TCP';
    if (!isProtocol(protocol)) {
      problems.push(`port ${JSON.stringify(portName)}: protocol ${JSON.stringify(protocol)} is not TCP, UDP or SCTP`);
      continue;
    }
    if (!isValidPort(p.port)) {
      problems.push(`port ${JSON.stringify(portName)}: port ${JSON.stringify(p.port ?? null)} is not in 1..65535`);
      continue;
    }
    const name: ServicePortName = Object.freeze({ namespace, name: serviceName, port: portName, protocol });
    const key = servicePortKey(name);
    if (seen.has(key)) {
      problems.push(`port ${JSON.stringify(portName)}: duplicate port name for ${protocol}`);
      continue;
    }
    seen.add(key);
    const port = p.port;
    const list = dedupe(endpoints.map(({ ep, ip }) => toEndpoint(ep, ip, port, opts.nodeName)));
    ports.push(Object.freeze({ name, key, endpoints: list }));
  }
  ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const lastChangeTriggerTime = parseTriggerTime(slice.metadata?.annotations?.[ANNOTATION_LAST_CHANGE_TRIGGER_TIME]);
  return { ...base, service, ports, ...(lastChangeTriggerTime !== undefined ? { lastChangeTriggerTime } : {}) };
}

/**
 * Of two records for one ip:port (an endpoint moving between slices, or a pod IP reused before
 * the old pod is gone), upstream keeps the later one unless it is terminating. Slices are taken
 * in name order, so the choice does not depend on the order events arrived in.
 */
function preferNewcomer(_kept: Endpoint, newcomer: Endpoint): boolean {
  return !newcomer.terminating;
}

function dedupe(list: Iterable<Endpoint>): readonly Endpoint[] {
  const byHostPort = new Map<string, Endpoint>();
  for (const ep of list) {
    const kept = byHostPort.get(ep.hostPort);
    if (!kept || preferNewcomer(kept, ep)) byHostPort.set(ep.hostPort, ep);
  }
  return Object.freeze([...byHostPort.values()].sort(compareEndpoints));
}

/**
 * All endpoints of one Service per service port, from the conversions of its slices. Slices are
 * taken in name order so that the same set of slices always merges to the same result.
 */
export function mergeEndpointSlices(slices: Iterable<EndpointSliceConversion>): Map<ServicePortKey, readonly Endpoint[]> {
  const ordered = [...slices].sort((a, b) => (a.slice < b.slice ? -1 : a.slice > b.slice ? 1 : 0));
  const collected = new Map<ServicePortKey, (readonly Endpoint[])[]>();
  for (const s of ordered) {
    for (const p of s.ports) {
      const lists = collected.get(p.key);
      if (lists) lists.push(p.endpoints);
      else collected.set(p.key, [p.endpoints]);
    }
  }
  const merged = new Map<ServicePortKey, readonly Endpoint[]>();
  for (const key of [...collected.keys()].sort()) {
    const lists = collected.get(key) ?? [];
    // One slice's list is already deduplicated and sorted: held as it is, not copied.
    const list = lists.length === 1 ? (lists[0] as readonly Endpoint[]) : dedupe(lists.flat());
    // A port without any endpoint is the same as no port at all.
    if (list.length > 0) merged.set(key, list);
  }
  return merged;
}
