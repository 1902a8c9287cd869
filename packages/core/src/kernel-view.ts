// What `kube-proxy inspect` and `kube-proxy explain` answer with: a backend's reading of the
// data plane the kernel holds (not of what it meant to write), per service port, and the walk of
// one packet through it. Pure types and comparisons; the backends do the reading.

import { joinHostPort } from './ip.js';
import { categorizeEndpoints } from './topology.js';
import type { IPFamily, NodeInfo, Protocol, ServicePort, ServicePortKey } from './model.js';

/**
 * A destination the data plane recognises for a service port: `ip:port/PROTO` (`[ip]:port/PROTO`
 * for IPv6) for ClusterIPs, externalIPs and load-balancer IPs, `NodePort port/PROTO` for a node port.
 */
export type Frontend = string;

export interface KernelServicePortView {
  /** Destinations the kernel dispatches to this service port, or blocks on its behalf. */
  readonly frontends: readonly Frontend[];
  /** `ip:port` of the endpoints the kernel can send this service port's traffic to, sorted. */
  readonly endpoints: readonly string[];
  /** What the kernel refuses on this service port's behalf, e.g. "10.96.0.12:80/TCP reject: no endpoints". */
  readonly blocked: readonly string[];
  /** The kernel objects holding it (chain, map element, virtual server, listener), for the raw commands. */
  readonly objects: readonly string[];
}

/** One reading of the kernel, indexed by service port. */
export interface KernelView {
  readonly mode: string;
  readonly ipFamily: IPFamily;
  /** Every service port asked about; one the kernel holds nothing for has empty lists. */
  readonly servicePorts: Readonly<Record<ServicePortKey, KernelServicePortView>>;
  /** Objects of this mode the kernel holds that none of the service ports owns (leftovers). */
  readonly unowned: readonly string[];
}

/** A new connection, as `kube-proxy explain --from SRC --to DST:PORT/PROTO` names it. */
export interface ExplainPacket {
  readonly src: string;
  readonly dst: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export type ExplainVerdict = 'accept' | 'drop' | 'reject';

/** One way the packet can go. */
export interface ExplainPath {
  /** Chains, maps and virtual servers passed, in order. */
  readonly steps: readonly string[];
  /** `ip:port` the connection is sent to; absent when it is not translated. */
  readonly endpoint?: string;
  /**
   * Share of new connections from this source that take this path. Absent for paths taken only
   * by a client that an earlier connection pinned (ClientIP session affinity).
   */
  readonly probability?: number;
  /** Taken only by a client pinned to this endpoint by session affinity. */
  readonly affinity?: boolean;
  /** The source address is rewritten to the node's (masquerade). */
  readonly masquerade: boolean;
  readonly verdict: ExplainVerdict;
  /** Why a packet is dropped or rejected, in the rules' own words where they have some. */
  readonly reason?: string;
}

export interface Explanation {
  readonly mode: string;
  readonly ipFamily: IPFamily;
  readonly packet: ExplainPacket;
  /** The service port whose rules the packet meets (`namespace/name:port`), when the rules name one. */
  readonly servicePort?: string;
  readonly paths: readonly ExplainPath[];
}

/** A Frontend string for an address and port. */
export function frontend(ip: string, port: number, protocol: Protocol): Frontend {
  return `${joinHostPort(ip, port)}/${protocol}`;
}

export function nodePortFrontend(port: number, protocol: Protocol): Frontend {
  return `NodePort ${port}/${protocol}`;
}

/** Every destination the data plane should recognise for `sp`. */
export function desiredFrontends(sp: ServicePort): Frontend[] {
  const out = [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs].map((ip) => frontend(ip, sp.port, sp.protocol));
  if (sp.nodePort !== 0) out.push(nodePortFrontend(sp.nodePort, sp.protocol));
  return [...new Set(out)].sort();
}

export interface ServicePortDrift {
  readonly missingFrontends: readonly Frontend[];
  readonly unexpectedFrontends: readonly Frontend[];
  readonly missingEndpoints: readonly string[];
  readonly unexpectedEndpoints: readonly string[];
}

/**
 * Where the kernel differs from what a sync would program now: frontends and reachable endpoints
 * (the union over traffic policies, as core's endpoint selection gives them). Undefined: no drift.
 */
export function servicePortDrift(
  sp: ServicePort,
  endpoints: Parameters<typeof categorizeEndpoints>[1],
  node: Pick<NodeInfo, 'name' | 'zone'>,
  kernel: KernelServicePortView | undefined,
): ServicePortDrift | undefined {
  const wantFrontends = desiredFrontends(sp);
  const wantEndpoints = categorizeEndpoints(sp, endpoints, node).allReachableEndpoints.map((ep) => ep.hostPort);
  const haveFrontends = new Set(kernel?.frontends ?? []);
  const haveEndpoints = new Set(kernel?.endpoints ?? []);
  const drift: ServicePortDrift = {
    missingFrontends: wantFrontends.filter((f) => !haveFrontends.has(f)),
    unexpectedFrontends: [...haveFrontends].filter((f) => !wantFrontends.includes(f)).sort(),
    missingEndpoints: wantEndpoints.filter((e) => !haveEndpoints.has(e)),
    unexpectedEndpoints: [...haveEndpoints].filter((e) => !wantEndpoints.includes(e)).sort(),
  };
  const any = Object.values(drift).some((list: readonly string[]) => list.length > 0);
  return any ? drift : undefined;
}

/** An empty view of one service port, for a backend to fill. */
export function emptyKernelServicePortView(): { frontends: Frontend[]; endpoints: string[]; blocked: string[]; objects: string[] } {
  return { frontends: [], endpoints: [], blocked: [], objects: [] };
}

/** Sorts and de-duplicates the lists of a view being built. */
export function finishKernelServicePortView(v: ReturnType<typeof emptyKernelServicePortView>): KernelServicePortView {
  const tidy = (l: string[]) => [...new Set(l)].sort();
  return { frontends: tidy(v.frontends), endpoints: tidy(v.endpoints), blocked: tidy(v.blocked), objects: tidy(v.objects) };
}
