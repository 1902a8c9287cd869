// The nftables layout: upstream's table `kube-proxy` per family, base and helper chains, service
// chains and the sets and verdict maps that dispatch service traffic in one lookup. Below the
// service chains it differs (docs/nftables.md): a policy chain DNATs with one rule, `dnat to
// numgen random mod n offset k map @endpoints-<g>`, through numbered elements of an endpoint map
// shared by a few hundred chains (endpoint-maps.ts), with no chain per endpoint and no anonymous
// map. The kernel validates every chain reachable from a base chain (once per hook) at each commit
// that adds a rule, and finds each new anonymous set a name by scanning the table's sets, so the
// fewer rules and sets the cheaper each change (bench/README.md). Only session-affinity services
// keep upstream's endpoint chains (their rules update the affinity sets), and hairpin traffic is
// masqueraded in postrouting through hairpin-connections.

import type { IPFamily } from '@kube-proxy-ts/core';

export const TABLE = 'kube-proxy';
export const TABLE_COMMENT = 'rules for kube-proxy';

// helper chains
export const SERVICES_CHAIN = 'services';
export const SERVICE_ENDPOINTS_CHECK_CHAIN = 'service-endpoints-check';
export const NODEPORT_ENDPOINTS_CHECK_CHAIN = 'nodeport-endpoints-check';
export const FIREWALL_CHECK_CHAIN = 'firewall-check';
export const CLUSTER_IPS_CHECK_CHAIN = 'cluster-ips-check';
export const REJECT_CHAIN = 'reject-chain';
export const MASQUERADING_CHAIN = 'masquerading';

// sets and maps
export const CLUSTER_IPS_SET = 'cluster-ips';
export const NODEPORT_IPS_SET = 'nodeport-ips';
export const SERVICE_IPS_MAP = 'service-ips';
export const SERVICE_NODEPORTS_MAP = 'service-nodeports';
export const NO_ENDPOINT_SERVICES_MAP = 'no-endpoint-services';
export const NO_ENDPOINT_NODEPORTS_MAP = 'no-endpoint-nodeports';
export const FIREWALL_IPS_MAP = 'firewall-ips';
/** `endpoints-<n>`: the numbered endpoints of policy chains, `K : address . port` (endpoint-maps.ts). */
export const ENDPOINTS_MAP_PREFIX = 'endpoints-';
/** `endpoint . endpoint . proto . port` of local endpoints: a connection DNATed back to its own source is masqueraded (hairpin). */
export const HAIRPIN_CONNECTIONS_SET = 'hairpin-connections';

// per-service and per-endpoint object prefixes
export const CLUSTER_POLICY_PREFIX = 'service-';
export const LOCAL_POLICY_PREFIX = 'local-';
export const EXTERNAL_PREFIX = 'external-';
export const FIREWALL_PREFIX = 'firewall-';
export const ENDPOINT_PREFIX = 'endpoint-';
export const AFFINITY_PREFIX = 'affinity-';

export type NftFamily = 'ip' | 'ip6';

export function nftFamily(ipFamily: IPFamily): NftFamily {
  return ipFamily === 'IPv6' ? 'ip6' : 'ip';
}

/** `ipv4_addr` / `ipv6_addr`: the element type of address sets. */
export function addrType(ipFamily: IPFamily): string {
  return ipFamily === 'IPv6' ? 'ipv6_addr' : 'ipv4_addr';
}

export interface BaseChain {
  readonly name: string;
  readonly type: 'filter' | 'nat';
  readonly hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  readonly priority: string;
}

/**
 * Upstream's base chains. The firewall check must see the service address, so it runs before
 * DNAT (dstnat-10); the other filter chains run at the filter priority, after DNAT, where a
 * packet still addressed to a ClusterIP was not sent to any endpoint. Priorities are written as
 * numbers: nft 1.0.6 accepts the symbolic names only in some hooks.
 */
export const BASE_CHAINS: readonly BaseChain[] = [
  { name: 'filter-prerouting-pre-dnat', type: 'filter', hook: 'prerouting', priority: '-110' },
  { name: 'filter-output-pre-dnat', type: 'filter', hook: 'output', priority: '-110' },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: '0' },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: '0' },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: '0' },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: '-100' },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: '-100' },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: '100' },
];

/** Base chains and sets that earlier versions of this layout created: deleted when found. */
export const OBSOLETE_BASE_CHAINS: readonly string[] = ['filter-prerouting', 'filter-output-post-dnat'];
/**
 * Helper chains of earlier versions that service chains jumped to (upstream's marking is now
 * inline, `mark set mark or 0x4000`): deleted as stale chains, once no service chain refers to them.
 */
export const OBSOLETE_HELPER_CHAINS: readonly string[] = ['mark-for-masquerade'];
export const OBSOLETE_SETS: readonly string[] = ['hairpin-endpoints'];

/** Jumps from base chains to helper chains, in rule order. */
export const JUMPS: readonly { readonly from: string; readonly to: string; readonly match: string }[] = [
  // reject is only valid in input/forward/output hooks on kernels before 5.9
  { from: 'filter-input', to: NODEPORT_ENDPOINTS_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-input', to: SERVICE_ENDPOINTS_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-forward', to: SERVICE_ENDPOINTS_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-output', to: SERVICE_ENDPOINTS_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-prerouting-pre-dnat', to: FIREWALL_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-output-pre-dnat', to: FIREWALL_CHECK_CHAIN, match: 'ct state new' },
  { from: 'nat-output', to: SERVICES_CHAIN, match: '' },
  { from: 'nat-prerouting', to: SERVICES_CHAIN, match: '' },
  { from: 'nat-postrouting', to: MASQUERADING_CHAIN, match: '' },
  { from: 'filter-forward', to: CLUSTER_IPS_CHECK_CHAIN, match: 'ct state new' },
  { from: 'filter-output', to: CLUSTER_IPS_CHECK_CHAIN, match: 'ct state new' },
];

export const HELPER_CHAINS: readonly string[] = [
  SERVICES_CHAIN,
  SERVICE_ENDPOINTS_CHECK_CHAIN,
  NODEPORT_ENDPOINTS_CHECK_CHAIN,
  FIREWALL_CHECK_CHAIN,
  CLUSTER_IPS_CHECK_CHAIN,
  REJECT_CHAIN,
  MASQUERADING_CHAIN,
];

export interface ContainerSpec {
  readonly name: string;
  readonly kind: 'set' | 'map';
  readonly type: (ipFamily: IPFamily) => string;
  readonly comment: string;
  /**
   * Nothing dispatches on a stale element of this container, so its deletion can wait for a
   * transaction that has nft read the chains anyway (a `delete element` costs that listing).
   */
  readonly lazyDeletion?: boolean;
}

const addrProtoPort = (f: IPFamily): string => `${addrType(f)} . inet_proto . inet_service : verdict`;

/** The containers whose elements are tracked per service (nodeport-ips is node-wide, handled apart). */
export const SERVICE_CONTAINERS: readonly ContainerSpec[] = [
  { name: CLUSTER_IPS_SET, kind: 'set', type: addrType, comment: 'Active ClusterIPs' },
  { name: SERVICE_IPS_MAP, kind: 'map', type: addrProtoPort, comment: 'ClusterIP, ExternalIP and LoadBalancer IP traffic' },
  { name: SERVICE_NODEPORTS_MAP, kind: 'map', type: () => 'inet_proto . inet_service : verdict', comment: 'NodePort traffic' },
  {
    name: NO_ENDPOINT_SERVICES_MAP,
    kind: 'map',
    type: addrProtoPort,
    comment: 'vmap to drop or reject packets to services with no endpoints',
  },
  {
    name: NO_ENDPOINT_NODEPORTS_MAP,
    kind: 'map',
    type: () => 'inet_proto . inet_service : verdict',
    comment: 'vmap to drop or reject packets to service nodeports with no endpoints',
  },
  { name: FIREWALL_IPS_MAP, kind: 'map', type: addrProtoPort, comment: 'destinations that are subject to LoadBalancerSourceRanges' },
  {
    name: HAIRPIN_CONNECTIONS_SET,
    kind: 'set',
    type: (f) => `${addrType(f)} . ${addrType(f)} . inet_proto . inet_service`,
    comment: 'service hairpin connections',
    lazyDeletion: true,
  },
];
