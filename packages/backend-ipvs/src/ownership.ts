// Which virtual services in the kernel are ours. The kernel keeps the record across restarts:
// our ipsets list every service address and node port we program, and kube-ipvs0 holds only
// our addresses. Anything else (another tool's virtual services, excludeCIDRs) is left alone.

import { cidrContains, type IPFamily } from '@kube-proxy-ts/core';
import type { IpsetContent, IpvsVirtualServer } from '@kube-proxy-ts/netfilter';
import { virtualServerKey } from '@kube-proxy-ts/netfilter';
import { ipsetName } from './ipsets.js';
import * as S from './layout.js';

export interface OwnershipFacts {
  readonly family: IPFamily;
  /** Our sets as the kernel holds them, by kernel name. */
  readonly savedSets: ReadonlyMap<string, IpsetContent>;
  /** Addresses on kube-ipvs0. */
  readonly bound: ReadonlySet<string>;
  /** Addresses on the node's other interfaces. */
  readonly nodeAddresses: readonly string[];
  /** Virtual services this process programmed (by virtualServerKey), for sets lost meanwhile. */
  readonly programmed: ReadonlySet<string>;
  readonly excludeCIDRs: readonly string[];
}

const ADDRESS_PORT_SETS = [S.KUBE_CLUSTER_IP, S.KUBE_EXTERNAL_IP, S.KUBE_EXTERNAL_IP_LOCAL, S.KUBE_LOAD_BALANCER];

export function ownershipTest(f: OwnershipFacts): (vs: IpvsVirtualServer) => boolean {
  const entries = (key: string) => f.savedSets.get(ipsetName(key, f.family))?.entries;
  const nodeAddresses = new Set(f.nodeAddresses);
  const nodePortSet: Record<string, string> = { TCP: S.KUBE_NODE_PORT_TCP, UDP: S.KUBE_NODE_PORT_UDP };
  return (vs) => {
    if (f.excludeCIDRs.some((cidr) => cidrContains(cidr, vs.address))) return false;
    if (f.programmed.has(virtualServerKey(vs)) || f.bound.has(vs.address)) return true;
    if (entries(S.KUBE_IPVS_IPS)?.has(vs.address)) return true;
    const ipPort = `${vs.address},${vs.protocol.toLowerCase()}:${vs.port}`;
    if (ADDRESS_PORT_SETS.some((key) => entries(key)?.has(ipPort))) return true;
    if (vs.protocol === 'SCTP') return entries(S.KUBE_NODE_PORT_SCTP)?.has(ipPort) ?? false;
    return nodeAddresses.has(vs.address) && (entries(nodePortSet[vs.protocol]!)?.has(String(vs.port)) ?? false);
  };
}
