// The node-local model every backend programs: immutable records derived from Services,
// EndpointSlices and this Node, one view per IP family.

export type IPFamily = 'IPv4' | 'IPv6';
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer';

/** Identifies one port of one Service, as upstream's proxy.ServicePortName. */
export interface ServicePortName {
  readonly namespace: string;
  readonly name: string;
  /** The port's name; "" for an unnamed single port. */
  readonly port: string;
  readonly protocol: Protocol;
}

/**
 * Map key of a service port: `namespace/name:port/PROTOCOL`.
 * Built only by `servicePortKey()` so every package spells it the same way.
 */
export type ServicePortKey = string;

export type SessionAffinity =
  | { readonly type: 'None' }
  | { readonly type: 'ClientIP'; readonly timeoutSeconds: number };

/** One port of one Service for one IP family, with everything a data plane needs. */
export interface ServicePort {
  readonly key: ServicePortKey;
  readonly name: ServicePortName;
  readonly type: ServiceType;
  /** The ClusterIP of this port's IP family. */
  readonly clusterIP: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** 0 when the service has no node port. */
  readonly nodePort: number;
  /** Target port as written in the Service (number or name); informational. */
  readonly targetPort: number | string;
  /** externalIPs of this family. */
  readonly externalIPs: readonly string[];
  /** LoadBalancer ingress IPs of this family, without those whose ipMode is Proxy. */
  readonly loadBalancerVIPs: readonly string[];
  /** loadBalancerSourceRanges of this family, as CIDRs. */
  readonly loadBalancerSourceRanges: readonly string[];
  readonly sessionAffinity: SessionAffinity;
  /** externalTrafficPolicy Local (only meaningful when externally accessible). */
  readonly externalPolicyLocal: boolean;
  /** internalTrafficPolicy Local. */
  readonly internalPolicyLocal: boolean;
  /** 0 when none. */
  readonly healthCheckNodePort: number;
  /** spec.trafficDistribution, e.g. "PreferClose". */
  readonly trafficDistribution: string | undefined;
  /** Annotation service.kubernetes.io/topology-mode (or the older topology-aware-hints). */
  readonly topologyMode: string | undefined;
}

/** One endpoint (address:port) of one service port. */
export interface Endpoint {
  readonly ip: string;
  readonly port: number;
  /** `ip:port`, or `[ip]:port` for IPv6. */
  readonly hostPort: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly nodeName: string | undefined;
  readonly zone: string | undefined;
  /** hints.forZones names; undefined when the endpoint carries no zone hints. */
  readonly zoneHints: readonly string[] | undefined;
  /** hints.forNodes names; undefined when none. */
  readonly nodeHints: readonly string[] | undefined;
  /** The endpoint runs on this node. */
  readonly isLocal: boolean;
}

/** What the proxy knows of the node it runs on. */
export interface NodeInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Label topology.kubernetes.io/zone. */
  readonly zone: string | undefined;
  /** spec.podCIDRs of this family. */
  readonly podCIDRs: readonly string[];
  /** Node addresses (InternalIP, ExternalIP) of this family. */
  readonly addresses: readonly string[];
  /** False once the node is being deleted or tainted ToBeDeletedByClusterAutoscaler. */
  readonly eligible: boolean;
}
