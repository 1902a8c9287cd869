// `kube-proxy inspect` and `explain` in IPVS mode: one `ipvsadm -Ln` listing, indexed by virtual
// server. A service port owns the virtual servers at its ClusterIP, externalIPs and load-balancer
// IPs on its port, and those on its node port at any address; its endpoints are their real servers
// with a weight (weight 0 is a terminating endpoint draining its connections). explain looks the
// destination up the way IPVS does (protocol, address, port) and shares connections by weight.

import {
  emptyKernelServicePortView,
  finishKernelServicePortView,
  frontend,
  joinHostPort,
  nodePortFrontend,
  type ExplainPacket,
  type Explanation,
  type IPFamily,
  type KernelServicePortView,
  type KernelView,
  type ServicePort,
} from '@kube-proxy-ts/core';
import { virtualServerKey, type IpvsServiceListing } from '@kube-proxy-ts/netfilter';

const describe = (l: IpvsServiceListing) =>
  `virtual server ${virtualServerKey(l.service)} (${l.service.scheduler}${l.service.persistentTimeout !== undefined ? `, persistent ${l.service.persistentTimeout}s` : ''})`;

export function ipvsKernelView(listing: readonly IpvsServiceListing[], servicePorts: readonly ServicePort[], ipFamily: IPFamily): KernelView {
  const byKey = new Map(listing.map((l) => [virtualServerKey(l.service), l]));
  const serviceAddresses = new Set(servicePorts.flatMap((sp) => [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs]));
  // `PROTO/port` -> virtual servers at addresses that are no service's: node-port virtual servers.
  const byNodePort = new Map<string, IpvsServiceListing[]>();
  for (const l of listing) {
    if (serviceAddresses.has(l.service.address)) continue;
    const k = `${l.service.protocol}/${l.service.port}`;
    byNodePort.set(k, [...(byNodePort.get(k) ?? []), l]);
  }
  const owned = new Set<IpvsServiceListing>();
  const result: Record<string, KernelServicePortView> = {};
  for (const sp of servicePorts) {
    const v = emptyKernelServicePortView();
    const take = (l: IpvsServiceListing, f: string) => {
      owned.add(l);
      v.frontends.push(f);
      v.objects.push(describe(l));
      for (const rs of l.realServers) if (rs.weight > 0) v.endpoints.push(joinHostPort(rs.address, rs.port));
      if (!l.realServers.some((rs) => rs.weight > 0)) v.blocked.push(`${f} drop: ${describe(l)} has no real server with a weight`);
    };
    for (const ip of [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs]) {
      const l = byKey.get(virtualServerKey({ protocol: sp.protocol, address: ip, port: sp.port }));
      if (l) take(l, frontend(ip, sp.port, sp.protocol));
    }
    if (sp.nodePort !== 0) for (const l of byNodePort.get(`${sp.protocol}/${sp.nodePort}`) ?? []) take(l, nodePortFrontend(sp.nodePort, sp.protocol));
    result[sp.key] = finishKernelServicePortView(v);
  }
  const unowned = listing.filter((l) => !owned.has(l)).map(describe).sort();
  return { mode: 'ipvs', ipFamily, servicePorts: result, unowned };
}

/**
 * The virtual server IPVS picks for `packet` and the share of new connections each real server
 * gets (weighted, as rr/wrr and the hashing schedulers do over many clients). Masquerade is shown
 * for hairpin traffic (an endpoint reaching itself); off-cluster sources are masqueraded by the
 * iptables rules of this mode, which explain does not walk.
 */
export function ipvsExplain(listing: readonly IpvsServiceListing[], packet: ExplainPacket, ipFamily: IPFamily): Explanation {
  const l = listing.find((x) => virtualServerKey(x.service) === virtualServerKey({ protocol: packet.protocol, address: packet.dst, port: packet.port }));
  if (!l) {
    return {
      mode: 'ipvs',
      ipFamily,
      packet,
      paths: [{ steps: ['no virtual server'], probability: 1, masquerade: false, verdict: 'accept', reason: 'not a service address and port of this node: IPVS leaves it alone (KUBE-IPVS-FILTER rejects new connections to other ports of a service address)' }],
    };
  }
  const live = l.realServers.filter((rs) => rs.weight > 0);
  const total = live.reduce((n, rs) => n + rs.weight, 0);
  const steps = [describe(l)];
  if (live.length === 0) {
    return { mode: 'ipvs', ipFamily, packet, paths: [{ steps, probability: 1, masquerade: false, verdict: 'drop', reason: 'no endpoints: the virtual server has no real server with a weight' }] };
  }
  const persistent = l.service.persistentTimeout !== undefined;
  return {
    mode: 'ipvs',
    ipFamily,
    packet,
    paths: live.map((rs) => ({
      steps,
      endpoint: joinHostPort(rs.address, rs.port),
      probability: Math.round((rs.weight / total) * 1e6) / 1e6,
      masquerade: rs.address === packet.src,
      verdict: 'accept' as const,
      ...(persistent ? { reason: `persistent: a client returning within ${l.service.persistentTimeout}s keeps its endpoint` } : {}),
    })),
  };
}
