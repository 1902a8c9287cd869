// The sandbox's addressing plan. Namespaces are private, so these never meet the host's networks.
//
//   client (a pod without a server)           pod1 .. podN (servers)
//   10.244.1.100/32  eth0                     10.244.1.11 .. 10.244.1.(10+N) /32  eth0
//          \                                   /
//   veth-client   ---------  node  ---------  veth-pod1 .. veth-podN   (each holds 10.244.1.1/32,
//                              |                                        the pods' gateway; /32 routes)
//                            eth0 192.168.50.1/24   (the node IP; default route via external)
//                              |
//                     external eth0 192.168.50.2/24 (outside the cluster; default route via the node)
//
// IPv6 (option ipv6): pods fd00:10:244:1::(10+i), client fd00:10:244:1::100, gateway
// fd00:10:244:1::1, node fd00:192:168:50::1/64, external fd00:192:168:50::2/64.

export const PLAN = {
  clusterCIDR: '10.244.0.0/16',
  podCIDR: '10.244.1.0/24',
  podGateway: '10.244.1.1',
  clientIP: '10.244.1.100',
  nodeIP: '192.168.50.1',
  externalIP: '192.168.50.2',
  nodeLinkPrefix: 24,
  /** Not routed anywhere: a place to pick ClusterIPs from. */
  serviceCIDR: '10.96.0.0/16',
  ipv6: {
    clusterCIDR: 'fd00:10:244::/56',
    podCIDR: 'fd00:10:244:1::/64',
    podGateway: 'fd00:10:244:1::1',
    clientIP: 'fd00:10:244:1::100',
    nodeIP: 'fd00:192:168:50::1',
    externalIP: 'fd00:192:168:50::2',
    nodeLinkPrefix: 64,
    serviceCIDR: 'fd00:10:96::/112',
  },
} as const;

/** IPv4 address of pod `i` (1-based). */
export function podIP(i: number): string {
  return `10.244.1.${10 + i}`;
}

/** IPv6 address of pod `i` (1-based). */
export function podIPv6(i: number): string {
  return `fd00:10:244:1::${10 + i}`;
}
