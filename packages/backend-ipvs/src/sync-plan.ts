// The planning of an IPVS sync, without I/O. computeDesired: what the data plane should hold for
// one ProxyState (virtual services with their real servers, the addresses on kube-ipvs0 and the
// ipset entries), as upstream's IPVS proxier computes them; the kernel facts it needs (local
// addresses) come in as arguments. diffIpvs: the ipvsadm --restore payload that turns the
// virtual services the kernel lists (read once per sync) into the desired ones, writing only the
// differences. Removed real servers drain gracefully, as upstream's graceful termination manager
// does.

import {
  categorizeEndpoints,
  cidrContains,
  ipFamilyOf,
  type Endpoint,
  type ProxyState,
  type ServicePort,
  type ServicePortKey,
} from '@kube-proxy-ts/core';
import type { IpvsProtocol, IpvsRealServer, IpvsServiceListing, IpvsVirtualServer, NodePortAddresses } from '@kube-proxy-ts/netfilter';
import { canonicalIpsetEntry, IpvsadmRestoreWriter, ipvsHostPort, sameServiceSettings, virtualServerKey } from '@kube-proxy-ts/netfilter';
import * as S from './layout.js';

export interface DesiredRealServer {
  readonly address: string;
  readonly port: number;
}

export interface DesiredVirtualService {
  readonly service: IpvsVirtualServer;
  /** Keyed by `ip:port` (`[ip]:port` for IPv6). */
  readonly realServers: ReadonlyMap<string, DesiredRealServer>;
  readonly servicePort: ServicePortKey;
}

export interface DesiredDataPlane {
  /** Keyed by virtualServerKey(). */
  readonly virtualServices: ReadonlyMap<string, DesiredVirtualService>;
  /** Addresses kube-ipvs0 must hold. */
  readonly bindAddresses: ReadonlySet<string>;
  /** Entries per ipset key (upstream IPv4 name), in ipset's save spelling. */
  readonly ipsetEntries: ReadonlyMap<string, ReadonlySet<string>>;
  /** LB VIP ports with source ranges that exclude this node: the node itself may not reach them. */
  readonly lbNoNodeAccess: readonly { readonly ip: string; readonly protocol: string; readonly port: number }[];
  /** Services (ns/name) with endpoints somewhere but none local, per traffic policy. */
  readonly noLocalEndpoints: { readonly internal: ReadonlySet<string>; readonly external: ReadonlySet<string> };
  /** Problems worth a log line (duplicate addresses, wrong family). */
  readonly problems: readonly string[];
}

export interface DesiredInputs {
  readonly state: ProxyState;
  readonly scheduler: string;
  readonly schedulerFlags: readonly string[];
  /** Local addresses of this family on interfaces other than kube-ipvs0. */
  readonly nodeAddresses: readonly string[];
  readonly nodePortAddresses: NodePortAddresses;
}

/** Addresses reaching here passed core's validation: the family is a matter of the colon. */

const isLoopbackOrLinkLocal = (ip: string) => ip.startsWith('127.') || ip === '::1' || /^fe[89ab]/i.test(ip);

/** The node addresses NodePort virtual services listen on. */
export function nodePortIPs(nodeAddresses: readonly string[], nodePortAddresses: NodePortAddresses): string[] {
  return nodePortAddresses.select(nodeAddresses).filter((ip) => !isLoopbackOrLinkLocal(ip));
}

export function computeDesired(inputs: DesiredInputs): DesiredDataPlane {
  const { state } = inputs;
  const family = state.ipFamily;
  const virtualServices = new Map<string, DesiredVirtualService>();
  const bindAddresses = new Set<string>();
  const entries = new Map<string, Set<string>>(S.IPSETS.map((s) => [s.key, new Set<string>()]));
  const add = (set: string, entry: string) => entries.get(set)!.add(entry);
  const lbNoNodeAccess: { ip: string; protocol: string; port: number }[] = [];
  const noLocalInternal = new Set<string>();
  const noLocalExternal = new Set<string>();
  const problems: string[] = [];
  const nodeAddressSet = new Set(inputs.nodeAddresses);
  const primaryNodeIP = state.node.addresses.find((a) => ipFamilyOf(a) === family);

  const hasNodePort = [...state.services.values()].some((sp) => sp.nodePort !== 0);
  const nodeIPs = hasNodePort ? nodePortIPs(inputs.nodeAddresses, inputs.nodePortAddresses) : [];

  const keys = [...state.services.keys()].sort();
  for (const key of keys) {
    const sp = state.services.get(key)!;
    const proto = sp.protocol.toLowerCase();
    const svcName = `${sp.name.namespace}/${sp.name.name}`;
    const endpoints = state.endpoints.get(key) ?? [];
    const cat = categorizeEndpoints(sp, endpoints, state.node);

    // Real servers for one kind of traffic, as upstream's syncEndpoint picks them.
    const pick = (onlyNodeLocal: boolean): readonly Endpoint[] => {
      if (!onlyNodeLocal) return cat.clusterEndpoints;
      if (cat.localEndpoints.length > 0) return cat.localEndpoints;
      if (cat.hasAnyEndpoints && sp.internalPolicyLocal) noLocalInternal.add(svcName);
      if (cat.hasAnyEndpoints && sp.externalPolicyLocal) noLocalExternal.add(svcName);
      return cat.clusterEndpoints;
    };

    const addVirtualService = (address: string, port: number, onlyNodeLocal: boolean, bind: boolean) => {
      if (ipFamilyOf(address) !== family) {
        problems.push(`${svcName}: address ${address} is not ${family}, skipped`);
        return;
      }
      const service = virtualServer(sp, address, port, inputs);
      const vsKey = virtualServerKey(service);
      if (virtualServices.has(vsKey)) {
        problems.push(`${svcName}: ${vsKey} already belongs to ${virtualServices.get(vsKey)!.servicePort}, skipped`);
        return;
      }
      const realServers = new Map<string, DesiredRealServer>();
      for (const ep of pick(onlyNodeLocal)) {
        if (ipFamilyOf(ep.ip) !== family) continue;
        realServers.set(ipvsHostPort(ep.ip, ep.port), { address: ep.ip, port: ep.port });
      }
      virtualServices.set(vsKey, { service, realServers, servicePort: key });
      if (bind) bindAddresses.add(address);
    };

    for (const ep of endpoints) {
      if (ep.isLocal && ipFamilyOf(ep.ip) === family) add(S.KUBE_LOOP_BACK, `${ep.ip},${proto}:${ep.port},${ep.ip}`);
    }

    add(S.KUBE_CLUSTER_IP, `${sp.clusterIP},${proto}:${sp.port}`);
    addVirtualService(sp.clusterIP, sp.port, sp.internalPolicyLocal, true);

    for (const ip of sp.externalIPs) {
      add(sp.externalPolicyLocal ? S.KUBE_EXTERNAL_IP_LOCAL : S.KUBE_EXTERNAL_IP, `${ip},${proto}:${sp.port}`);
      // An address another interface already holds is the node's: never take it over.
      addVirtualService(ip, sp.port, sp.externalPolicyLocal, !nodeAddressSet.has(ip));
    }

    for (const ip of sp.loadBalancerVIPs) {
      const entry = `${ip},${proto}:${sp.port}`;
      add(S.KUBE_LOAD_BALANCER, entry);
      if (sp.externalPolicyLocal) add(S.KUBE_LOAD_BALANCER_LOCAL, entry);
      if (sp.loadBalancerSourceRanges.length > 0) {
        add(S.KUBE_LOAD_BALANCER_FW, entry);
        let allowFromNode = false;
        for (const cidr of sp.loadBalancerSourceRanges) {
          add(S.KUBE_LOAD_BALANCER_SOURCE_CIDR, canonicalIpsetEntry(`${entry},${cidr}`));
          if (primaryNodeIP && cidrContains(cidr, primaryNodeIP)) allowFromNode = true;
        }
        if (allowFromNode) add(S.KUBE_LOAD_BALANCER_SOURCE_IP, `${entry},${ip}`);
        else lbNoNodeAccess.push({ ip, protocol: proto, port: sp.port });
      }
      addVirtualService(ip, sp.port, sp.externalPolicyLocal, !nodeAddressSet.has(ip));
    }

    if (sp.nodePort !== 0 && nodeIPs.length > 0) {
      const portEntries = sp.protocol === 'SCTP' ? nodeIPs.map((ip) => `${ip},sctp:${sp.nodePort}`) : [String(sp.nodePort)];
      const [all, local] = NODE_PORT_SETS[sp.protocol];
      for (const e of portEntries) {
        add(all, e);
        if (sp.externalPolicyLocal) add(local, e);
      }
      for (const ip of nodeIPs) addVirtualService(ip, sp.nodePort, sp.externalPolicyLocal, false);
    }

    if (sp.healthCheckNodePort !== 0) add(S.KUBE_HEALTH_CHECK_NODE_PORT, String(sp.healthCheckNodePort));
  }

  for (const ip of bindAddresses) add(S.KUBE_IPVS_IPS, ip);

  return {
    virtualServices,
    bindAddresses,
    ipsetEntries: entries,
    lbNoNodeAccess,
    noLocalEndpoints: { internal: noLocalInternal, external: noLocalExternal },
    problems,
  };
}

const NODE_PORT_SETS: Record<IpvsProtocol, readonly [string, string]> = {
  TCP: [S.KUBE_NODE_PORT_TCP, S.KUBE_NODE_PORT_LOCAL_TCP],
  UDP: [S.KUBE_NODE_PORT_UDP, S.KUBE_NODE_PORT_LOCAL_UDP],
  SCTP: [S.KUBE_NODE_PORT_SCTP, S.KUBE_NODE_PORT_LOCAL_SCTP],
};

function virtualServer(sp: ServicePort, address: string, port: number, inputs: DesiredInputs): IpvsVirtualServer {
  return {
    protocol: sp.protocol,
    address,
    port,
    scheduler: inputs.scheduler,
    schedulerFlags: inputs.schedulerFlags,
    persistentTimeout: sp.sessionAffinity.type === 'ClientIP' ? sp.sessionAffinity.timeoutSeconds : undefined,
  };
}

/** A real server that was removed but still carries connections: weight 0 until they end. */
export interface DrainingRealServer {
  readonly service: IpvsVirtualServer;
  readonly address: string;
  readonly port: number;
}

/** `TCP/10.0.0.1:80/10.1.0.1:8080`: one real server of one virtual service. */
export function realServerKey(service: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>, address: string, port: number): string {
  return `${virtualServerKey(service)}/${ipvsHostPort(address, port)}`;
}

export interface IpvsDiffInput {
  readonly desired: ReadonlyMap<string, DesiredVirtualService>;
  readonly current: readonly IpvsServiceListing[];
  /** Whether a listed virtual service that is not desired was created by this proxy. */
  readonly isOurs: (service: IpvsVirtualServer) => boolean;
  /** Real servers draining since earlier syncs, by realServerKey(). */
  readonly draining: ReadonlyMap<string, DrainingRealServer>;
}

export interface IpvsDiffCounts {
  servicesAdded: number;
  servicesChanged: number;
  servicesDeleted: number;
  realServersAdded: number;
  realServersDeleted: number;
  realServersReweighted: number;
  realServersDraining: number;
}

export interface IpvsDiff {
  readonly payload: string;
  /** The real servers still draining after this payload is applied. */
  readonly draining: Map<string, DrainingRealServer>;
  readonly counts: IpvsDiffCounts;
}

/**
 * Upstream drains only connection-oriented protocols: a UDP or SCTP real server goes at once
 * (expire_nodest_conn then drops its flows on their next packet).
 */
function drainsGracefully(service: IpvsVirtualServer): boolean {
  return service.protocol === 'TCP';
}

export function diffIpvs(input: IpvsDiffInput): IpvsDiff {
  const w = new IpvsadmRestoreWriter();
  const draining = new Map<string, DrainingRealServer>();
  const counts: IpvsDiffCounts = {
    servicesAdded: 0,
    servicesChanged: 0,
    servicesDeleted: 0,
    realServersAdded: 0,
    realServersDeleted: 0,
    realServersReweighted: 0,
    realServersDraining: 0,
  };
  const current = new Map(input.current.map((l) => [virtualServerKey(l.service), l]));

  const addRealServer = (service: IpvsVirtualServer, address: string, port: number) => {
    w.addRealServer(service, { address, port, forward: 'Masq', weight: 1 });
    counts.realServersAdded++;
  };

  const removeRealServer = (service: IpvsVirtualServer, rs: IpvsRealServer) => {
    const busy = rs.activeConnections + rs.inactiveConnections > 0;
    if (!drainsGracefully(service) || !busy) {
      w.deleteRealServer(service, rs);
      counts.realServersDeleted++;
      return;
    }
    if (rs.weight !== 0) {
      w.editRealServer(service, { ...rs, forward: 'Masq', weight: 0 });
      counts.realServersReweighted++;
    }
    draining.set(realServerKey(service, rs.address, rs.port), { service, address: rs.address, port: rs.port });
    counts.realServersDraining++;
  };

  for (const [key, want] of input.desired) {
    const have = current.get(key);
    if (!have) {
      w.addService(want.service);
      counts.servicesAdded++;
      for (const rs of want.realServers.values()) addRealServer(want.service, rs.address, rs.port);
      continue;
    }
    if (!sameServiceSettings(have.service, want.service)) {
      w.editService(want.service);
      counts.servicesChanged++;
    }
    const listed = new Map(have.realServers.map((rs) => [ipvsHostPort(rs.address, rs.port), rs]));
    for (const [hostPort, rs] of want.realServers) {
      const existing = listed.get(hostPort);
      if (!existing) {
        addRealServer(want.service, rs.address, rs.port);
      } else if (input.draining.has(realServerKey(want.service, rs.address, rs.port))) {
        // Re-added while draining: start afresh, as upstream, so it is not left at weight 0.
        w.deleteRealServer(want.service, existing);
        counts.realServersDeleted++;
        addRealServer(want.service, rs.address, rs.port);
      } else if (existing.weight !== 1 || existing.forward !== 'Masq') {
        w.editRealServer(want.service, { address: rs.address, port: rs.port, forward: 'Masq', weight: 1 });
        counts.realServersReweighted++;
      }
    }
    for (const [hostPort, rs] of listed) {
      if (!want.realServers.has(hostPort)) removeRealServer(want.service, rs);
    }
  }

  for (const [key, have] of current) {
    if (input.desired.has(key) || !input.isOurs(have.service)) continue;
    w.deleteService(have.service);
    counts.servicesDeleted++;
  }

  return { payload: w.toString(), draining, counts };
}
