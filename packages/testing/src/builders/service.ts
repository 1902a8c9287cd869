// service(): a V1Service as the API server would store it after defaulting.

import type { V1LoadBalancerIngress, V1Service, V1ServicePort, V1ServiceSpec } from '@kubernetes/client-node';
import { defaultClusterIP, defaultNodePort, ipFamilyOfAddress } from './ids.js';

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

/** A port as written in a manifest; everything but `port` has an upstream default. */
export interface ServicePortInput {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  /** Defaults to `port`. */
  targetPort?: number | string;
  /** NodePort/LoadBalancer services get a stable one in 30000-32767 when omitted; 0 means "none". */
  nodePort?: number;
  appProtocol?: string;
}

/**
 * Fields of the Service spec, flattened, plus metadata and status. Anything not listed here
 * can be set with a mutator function instead.
 */
export interface ServiceOptions extends Omit<Partial<V1ServiceSpec>, 'ports' | 'type'> {
  type?: ServiceType;
  ports?: ServicePortInput[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** status.loadBalancer.ingress; a string is an IP. */
  loadBalancerIngress?: Array<string | V1LoadBalancerIngress>;
  /** Family used for the default ClusterIP when none is given. */
  ipFamily?: 'IPv4' | 'IPv6';
  resourceVersion?: string;
}

export type ServiceMutator = (svc: V1Service) => void;

/** The default single port of a built Service (and of a built EndpointSlice). */
export const DEFAULT_PORT: Readonly<Required<Pick<ServicePortInput, 'name' | 'port' | 'protocol'>>> = {
  name: 'p80',
  port: 80,
  protocol: 'TCP',
};

/**
 * A Service as stored after API defaulting. Without options: type ClusterIP, one TCP port
 * `p80` (80 -> 80), a stable ClusterIP in 172.30.0.0/16, sessionAffinity None,
 * internalTrafficPolicy Cluster. `clusterIP: 'None'` makes it headless.
 *
 *   service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] })
 *   service('ns1', 'svc1', (svc) => { svc.spec!.sessionAffinity = 'ClientIP'; })
 */
export function service(
  namespace: string,
  name: string,
  options: ServiceOptions | ServiceMutator = {},
  mutate?: ServiceMutator,
): V1Service {
  const opts: ServiceOptions = typeof options === 'function' ? {} : options;
  const {
    labels,
    annotations,
    loadBalancerIngress,
    ipFamily,
    resourceVersion,
    ports: portInputs,
    type: typeOpt,
    ...specFields
  } = opts;
  const type: ServiceType = typeOpt ?? 'ClusterIP';
  const spec: V1ServiceSpec = { ...specFields, type };

  if (type === 'ExternalName') {
    spec.externalName ??= `${name}.example.com`;
  } else {
    const clusterIPs =
      spec.clusterIPs ?? [spec.clusterIP ?? defaultClusterIP(namespace, name, ipFamily ?? 'IPv4')];
    spec.clusterIP ??= clusterIPs[0];
    spec.clusterIPs = clusterIPs;
    if (spec.clusterIP !== 'None' && spec.clusterIP !== '') {
      spec.ipFamilies ??= clusterIPs.map(ipFamilyOfAddress);
    } else {
      spec.ipFamilies ??= [ipFamily ?? 'IPv4'];
    }
    spec.ipFamilyPolicy ??= spec.ipFamilies.length > 1 ? 'RequireDualStack' : 'SingleStack';
    spec.internalTrafficPolicy ??= 'Cluster';
  }
  spec.sessionAffinity ??= 'None';
  if (spec.sessionAffinity === 'ClientIP') {
    spec.sessionAffinityConfig ??= { clientIP: { timeoutSeconds: 10800 } };
  }
  const external = type === 'NodePort' || type === 'LoadBalancer';
  if (external) spec.externalTrafficPolicy ??= 'Cluster';
  if (type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;

  spec.ports = (portInputs ?? [{ ...DEFAULT_PORT }]).map((p): V1ServicePort => {
    const protocol = p.protocol ?? 'TCP';
    const port: V1ServicePort = { port: p.port, protocol, targetPort: p.targetPort ?? p.port };
    if (p.name !== undefined) port.name = p.name;
    if (p.appProtocol !== undefined) port.appProtocol = p.appProtocol;
    const wantsNodePort = external && (type === 'NodePort' || spec.allocateLoadBalancerNodePorts !== false);
    if (p.nodePort !== undefined) {
      if (p.nodePort !== 0) port.nodePort = p.nodePort;
    } else if (wantsNodePort) {
      port.nodePort = defaultNodePort(`${namespace}/${name}:${p.name ?? ''}/${protocol}`);
    }
    return port;
  });

  const svc: V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      namespace,
      name,
      uid: `uid-${namespace}-${name}`,
      ...(labels ? { labels: { ...labels } } : {}),
      ...(annotations ? { annotations: { ...annotations } } : {}),
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    spec,
    status: {
      loadBalancer: loadBalancerIngress
        ? { ingress: loadBalancerIngress.map((i) => (typeof i === 'string' ? { ip: i } : { ...i })) }
        : {},
    },
  };
  if (typeof options === 'function') options(svc);
  mutate?.(svc);
  return svc;
}
