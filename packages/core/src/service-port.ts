// V1Service -> ServicePort records for one IP family, with upstream's skips and policies.
// Nothing here throws on bad input: what cannot be used is dropped and explained in `problems`.

import type { V1Service, V1ServicePort } from '@kubernetes/client-node';
import { ipFamilyOf, parseCIDR, parseIP, isValidPort } from './ip.js';
import type { IPFamily, Protocol, ServicePort, ServicePortKey, ServicePortName, ServiceType } from './model.js';
import { invalidValueMessage, validateDNS1035Label, validateDNS1123Label, validatePortName } from './validation.js';

/** Label that hands a Service (and its EndpointSlices) to another proxy implementation. */
export const LABEL_SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
/** Label the EndpointSlice controller puts on the slices of headless Services. */
export const LABEL_HEADLESS = 'service.kubernetes.io/headless';
export const ANNOTATION_TOPOLOGY_MODE = 'service.kubernetes.io/topology-mode';
export const ANNOTATION_TOPOLOGY_AWARE_HINTS = 'service.kubernetes.io/topology-aware-hints';
/** Session affinity timeout the API server defaults to (3 hours). */
export const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS = 10800;
const MAX_CLIENT_IP_TIMEOUT_SECONDS = 86400;

const PROTOCOLS: ReadonlySet<string> = new Set<Protocol>(['TCP', 'UDP', 'SCTP']);
const SERVICE_TYPES: ReadonlySet<string> = new Set<ServiceType>(['ClusterIP', 'NodePort', 'LoadBalancer']);

/** Map key of a service port: `namespace/name:port/PROTOCOL`. */
export function servicePortKey(name: ServicePortName): ServicePortKey {
  return `${name.namespace}/${name.name}:${name.port}/${name.protocol}`;
}

/**
 * Upstream's ServicePortName.String(): `namespace/name:port`, or `namespace/name` for an unnamed
 * port. Upstream chain names hash this string, so it must match exactly.
 */
export function servicePortNameString(name: ServicePortName): string {
  return name.port === '' ? `${name.namespace}/${name.name}` : `${name.namespace}/${name.name}:${name.port}`;
}

export function isProtocol(p: unknown): p is Protocol {
  return typeof p === 'string' && PROTOCOLS.has(p);
}

export interface ServiceConversionOptions {
  /** This proxy's name for the service-proxy-name label; Services labelled with another name are skipped. */
  readonly proxyName?: string;
}

export interface ServiceConversion {
  /** Usable ports of the requested family, in spec order. */
  readonly ports: ServicePort[];
  /** Why the whole Service is ignored (ExternalName, headless, other family, ...). */
  readonly skipped?: string;
  /** Skipped only because it is of the other IP family: that family's tracker has it; not worth a log line. */
  readonly otherFamily?: boolean;
  /** Why the whole Service is refused: the API server would have rejected it (bad names). */
  readonly invalid?: string;
  /** Parts that were dropped (bad IPs, ports, CIDRs), one readable sentence each. */
  readonly problems: string[];
}

/** `namespace/name` of an object, with "" for a missing part. */
export function namespacedName(meta: { namespace?: string; name?: string } | undefined): string {
  return `${meta?.namespace ?? ''}/${meta?.name ?? ''}`;
}

/**
 * Whether an object carrying `labels` belongs to another proxy: upstream kube-proxy's informers
 * exclude every object with the service-proxy-name label; a proxy with a name accepts its own.
 */
export function belongsToOtherProxy(labels: Record<string, string> | undefined, proxyName: string | undefined): boolean {
  const value = labels?.[LABEL_SERVICE_PROXY_NAME];
  if (value === undefined) return false;
  return !proxyName || value !== proxyName;
}

/** The ClusterIP of `family`, as upstream's GetClusterIPByFamily (tolerant of a missing ipFamilies). */
function clusterIPOfFamily(svc: V1Service, family: IPFamily): string | undefined {
  const spec = svc.spec ?? {};
  const ips = spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  const families = spec.ipFamilies ?? [];
  if (families.length > 0) {
    const idx = families.indexOf(family);
    return idx >= 0 ? ips[idx] : undefined;
  }
  return ips.find((ip) => ipFamilyOf(ip) === family);
}

function ipsOfFamily(what: string, list: readonly (string | undefined)[] | undefined, family: IPFamily, problems: string[]): string[] {
  const out: string[] = [];
  for (const raw of list ?? []) {
    const ip = parseIP(raw?.trim());
    if (!ip) {
      problems.push(`${what} ${JSON.stringify(raw)} is not a valid IP address`);
      continue;
    }
    if (ip.family === family && !out.includes(ip.text)) out.push(ip.text);
  }
  return out;
}

function sessionAffinityOf(svc: V1Service, problems: string[]): ServicePort['sessionAffinity'] {
  if (svc.spec?.sessionAffinity !== 'ClientIP') return { type: 'None' };
  const t = svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  if (t === undefined || t === null) return { type: 'ClientIP', timeoutSeconds: DEFAULT_CLIENT_IP_TIMEOUT_SECONDS };
  if (!Number.isInteger(t) || t < 1 || t > MAX_CLIENT_IP_TIMEOUT_SECONDS) {
    problems.push(`sessionAffinityConfig.clientIP.timeoutSeconds ${t} is outside 1..${MAX_CLIENT_IP_TIMEOUT_SECONDS}; using ${DEFAULT_CLIENT_IP_TIMEOUT_SECONDS}`);
    return { type: 'ClientIP', timeoutSeconds: DEFAULT_CLIENT_IP_TIMEOUT_SECONDS };
  }
  return { type: 'ClientIP', timeoutSeconds: t };
}

/**
 * externalTrafficPolicy Local only takes effect on externally reachable services
 * (upstream's apiservice.ExternalPolicyLocal).
 */
function externalPolicyLocalOf(svc: V1Service, type: ServiceType, externalIPs: readonly unknown[]): boolean {
  const reachable = type === 'NodePort' || type === 'LoadBalancer' || externalIPs.length > 0;
  return reachable && svc.spec?.externalTrafficPolicy === 'Local';
}

function topologyModeOf(svc: V1Service): string | undefined {
  const a = svc.metadata?.annotations ?? {};
  // The newer annotation wins over the deprecated one, as upstream.
  return a[ANNOTATION_TOPOLOGY_MODE] ?? a[ANNOTATION_TOPOLOGY_AWARE_HINTS];
}

/**
 * The service ports a proxy of `family` programs for `svc`: one per spec port, or none with
 * `skipped` saying why.
 */
export function serviceToServicePorts(svc: V1Service, family: IPFamily, opts: ServiceConversionOptions = {}): ServiceConversion {
  const problems: string[] = [];
  const none = (skipped: string, otherFamily = false): ServiceConversion => ({ ports: [], skipped, problems, ...(otherFamily ? { otherFamily } : {}) });
  const spec = svc.spec;
  const namespace = svc.metadata?.namespace ?? '';
  const name = svc.metadata?.name ?? '';
  // Names reach chain names, comments and log lines: refuse what the API server would refuse.
  const badName = invalidServiceName(namespace, name);
  if (badName) return { ports: [], invalid: badName, problems };
  const badPorts = invalidPortNames(spec?.ports);
  if (badPorts) return { ports: [], invalid: badPorts, problems };
  if (!spec) return none('the Service has no spec');
  if (belongsToOtherProxy(svc.metadata?.labels, opts.proxyName)) {
    return none(`the Service is labelled ${LABEL_SERVICE_PROXY_NAME}=${svc.metadata?.labels?.[LABEL_SERVICE_PROXY_NAME]}`);
  }
  const rawType = spec.type ?? 'ClusterIP';
  if (rawType === 'ExternalName') return none('ExternalName Services are not proxied');
  if (!SERVICE_TYPES.has(rawType)) return none(`unknown Service type ${JSON.stringify(rawType)}`);
  const type = rawType as ServiceType;
  if (!spec.clusterIP && !(spec.clusterIPs && spec.clusterIPs.length > 0)) return none('the Service has no ClusterIP');
  if (spec.clusterIP === 'None' || spec.clusterIPs?.[0] === 'None') return none('headless Services are not proxied');
  const rawClusterIP = clusterIPOfFamily(svc, family);
  if (!rawClusterIP) {
    const bad = [spec.clusterIP, ...(spec.clusterIPs ?? [])].find((ip) => ip && !parseIP(ip));
    if (bad !== undefined && !spec.ipFamilies?.length) return none(`ClusterIP ${JSON.stringify(bad)} is not a valid IP address`);
    return none(`the Service has no ${family} ClusterIP`, true);
  }
  const clusterIP = parseIP(rawClusterIP);
  if (!clusterIP) return none(`ClusterIP ${JSON.stringify(rawClusterIP)} is not a valid IP address`);
  if (clusterIP.family !== family) return none(`ClusterIP ${rawClusterIP} is not ${family}`, true);

  const externalIPs = ipsOfFamily('externalIP', spec.externalIPs, family, problems);
  const ingressIPs = (svc.status?.loadBalancer?.ingress ?? [])
    // ipMode Proxy: the load balancer delivers to the node itself, so the VIP must not be short-circuited.
    .filter((ing) => ing.ip && ing.ipMode !== 'Proxy')
    .map((ing) => ing.ip);
  // Taken whatever the type, as upstream: the API server clears the status when it stops being a LoadBalancer.
  const loadBalancerVIPs = ipsOfFamily('load-balancer ingress IP', ingressIPs, family, problems);
  const loadBalancerSourceRanges: string[] = [];
  for (const raw of spec.loadBalancerSourceRanges ?? []) {
    const cidr = parseCIDR(raw.trim());
    if (!cidr) {
      problems.push(`loadBalancerSourceRange ${JSON.stringify(raw)} is not a valid CIDR`);
      continue;
    }
    if (cidr.family === family && !loadBalancerSourceRanges.includes(cidr.text)) loadBalancerSourceRanges.push(cidr.text);
  }
  const sessionAffinity = sessionAffinityOf(svc, problems);
  const externalPolicyLocal = externalPolicyLocalOf(svc, type, spec.externalIPs ?? []);
  const internalPolicyLocal = spec.internalTrafficPolicy === 'Local';
  let healthCheckNodePort = 0;
  // Only LoadBalancer Services with the Local policy get a health-check node port (upstream NeedsHealthCheck).
  if (type === 'LoadBalancer' && externalPolicyLocal) {
    const hc = spec.healthCheckNodePort;
    if (isValidPort(hc)) healthCheckNodePort = hc;
    else problems.push(`healthCheckNodePort ${JSON.stringify(hc ?? null)} is not a valid port`);
  }
  const trafficDistribution = spec.trafficDistribution || undefined;
  const topologyMode = topologyModeOf(svc);

  const ports: ServicePort[] = [];
  for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
    if (!p || typeof p !== 'object') {
      problems.push(`port ${JSON.stringify(p)} is not a port object`);
      continue;
    }
    const label = portLabel(p);
    const portName = p.name ?? '';
    const protocol = p.protocol ?? 'TCP';
    if (!isProtocol(protocol)) {
      problems.push(`port ${label}: protocol ${JSON.stringify(protocol)} is not TCP, UDP or SCTP`);
      continue;
    }
    if (!isValidPort(p.port)) {
      problems.push(`port ${label}: port ${JSON.stringify(p.port ?? null)} is not in 1..65535`);
      continue;
    }
    let nodePort = 0;
    if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0) {
      if (!isValidPort(p.nodePort)) {
        problems.push(`port ${label}: nodePort ${JSON.stringify(p.nodePort)} is not in 1..65535`);
        continue;
      }
      nodePort = p.nodePort;
    }
    const spn: ServicePortName = { namespace, name, port: portName, protocol };
    const key = servicePortKey(spn);
    ports.push(
      Object.freeze({
        key,
        name: Object.freeze(spn),
        type,
        clusterIP: clusterIP.text,
        port: p.port,
        protocol,
        nodePort,
        targetPort: p.targetPort ?? p.port,
        externalIPs: Object.freeze([...externalIPs]),
        loadBalancerVIPs: Object.freeze([...loadBalancerVIPs]),
        loadBalancerSourceRanges: Object.freeze([...loadBalancerSourceRanges]),
        sessionAffinity: Object.freeze(sessionAffinity),
        externalPolicyLocal,
        internalPolicyLocal,
        healthCheckNodePort,
        trafficDistribution,
        topologyMode,
      }),
    );
  }
  return { ports, problems };
}

/** Why a Service's namespace or name would not pass the API server's validation, or undefined. */
export function invalidServiceName(namespace: unknown, name: unknown): string | undefined {
  const badNamespace = validateDNS1123Label(namespace);
  if (badNamespace) return invalidValueMessage('namespace', namespace, badNamespace);
  const badName = validateDNS1035Label(name);
  return badName ? invalidValueMessage('name', name, badName) : undefined;
}

/**
 * Why the port names would not pass the API server's validation, or undefined: "" only for a
 * single port, every name an IANA_SVC_NAME, no name twice whatever the protocols.
 */
function invalidPortNames(ports: unknown): string | undefined {
  const list: unknown[] = Array.isArray(ports) ? ports : [];
  const names = new Set<unknown>();
  for (const [i, p] of list.entries()) {
    const portName: unknown = (p as V1ServicePort | null)?.name ?? '';
    if (portName === '' && list.length > 1) return `port ${i} has no name; every port of a multi-port Service must be named`;
    const bad = portName === '' ? undefined : validatePortName(portName);
    if (bad) return invalidValueMessage('port name', portName, bad);
    if (names.has(portName)) return `port name ${JSON.stringify(portName)} is used twice`;
    names.add(portName);
  }
  return undefined;
}

function portLabel(p: V1ServicePort): string {
  return p.name ? JSON.stringify(p.name) : String(p.port);
}

/** Reachable from outside the cluster: it has a node port, a load-balancer VIP or an externalIP. */
export function externallyAccessible(sp: ServicePort): boolean {
  return sp.nodePort !== 0 || sp.loadBalancerVIPs.length > 0 || sp.externalIPs.length > 0;
}

/** Some traffic to this port may go to any endpoint in the cluster. */
export function usesClusterEndpoints(sp: ServicePort): boolean {
  // Even with externalTrafficPolicy Local, external traffic from pods on this node
  // short-circuits to the Cluster endpoints, so any external port needs them.
  return !sp.internalPolicyLocal || externallyAccessible(sp);
}

/** Some traffic to this port may only go to endpoints on this node. */
export function usesLocalEndpoints(sp: ServicePort): boolean {
  return sp.internalPolicyLocal || (sp.externalPolicyLocal && externallyAccessible(sp));
}
