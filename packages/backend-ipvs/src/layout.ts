// The fixed names of IPVS mode, as upstream spells them: the ipsets, the dummy device, the
// iptables chains and the jumps into them, the masquerade mark; and the bounds on each process
// a sync runs.

import { jumpRule, type IpsetType, type JumpRule } from '@kube-proxy-ts/netfilter';

/** Holds every service address IPVS answers for: IPVS only handles traffic to local addresses. */
export const DUMMY_DEVICE = 'kube-ipvs0';

// The ipsets. They are both what the small iptables layer matches on and the kernel-side record
// of which virtual services are ours.
export const KUBE_LOOP_BACK = 'KUBE-LOOP-BACK';
export const KUBE_CLUSTER_IP = 'KUBE-CLUSTER-IP';
export const KUBE_EXTERNAL_IP = 'KUBE-EXTERNAL-IP';
export const KUBE_EXTERNAL_IP_LOCAL = 'KUBE-EXTERNAL-IP-LOCAL';
export const KUBE_LOAD_BALANCER = 'KUBE-LOAD-BALANCER';
export const KUBE_LOAD_BALANCER_FW = 'KUBE-LOAD-BALANCER-FW';
export const KUBE_LOAD_BALANCER_LOCAL = 'KUBE-LOAD-BALANCER-LOCAL';
export const KUBE_LOAD_BALANCER_SOURCE_IP = 'KUBE-LOAD-BALANCER-SOURCE-IP';
export const KUBE_LOAD_BALANCER_SOURCE_CIDR = 'KUBE-LOAD-BALANCER-SOURCE-CIDR';
export const KUBE_NODE_PORT_TCP = 'KUBE-NODE-PORT-TCP';
export const KUBE_NODE_PORT_LOCAL_TCP = 'KUBE-NODE-PORT-LOCAL-TCP';
export const KUBE_NODE_PORT_UDP = 'KUBE-NODE-PORT-UDP';
export const KUBE_NODE_PORT_LOCAL_UDP = 'KUBE-NODE-PORT-LOCAL-UDP';
export const KUBE_NODE_PORT_SCTP = 'KUBE-NODE-PORT-SCTP-HASH';
export const KUBE_NODE_PORT_LOCAL_SCTP = 'KUBE-NODE-PORT-LOCAL-SCTP-HASH';
export const KUBE_HEALTH_CHECK_NODE_PORT = 'KUBE-HEALTH-CHECK-NODE-PORT';
export const KUBE_IPVS_IPS = 'KUBE-IPVS-IPS';

export interface IpsetInfo {
  /** Upstream's (IPv4) name; the key everything else uses. */
  readonly key: string;
  readonly type: IpsetType;
  readonly comment: string;
}

/** Every set, with upstream's type and comment. */
export const IPSETS: readonly IpsetInfo[] = [
  { key: KUBE_LOOP_BACK, type: 'hash:ip,port,ip', comment: 'Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose' },
  { key: KUBE_CLUSTER_IP, type: 'hash:ip,port', comment: 'Kubernetes service cluster ip + port for masquerade purpose' },
  { key: KUBE_EXTERNAL_IP, type: 'hash:ip,port', comment: 'Kubernetes service external ip + port for masquerade and filter purpose' },
  { key: KUBE_EXTERNAL_IP_LOCAL, type: 'hash:ip,port', comment: 'Kubernetes service external ip + port with externalTrafficPolicy=local' },
  { key: KUBE_LOAD_BALANCER, type: 'hash:ip,port', comment: 'Kubernetes service lb portal' },
  { key: KUBE_LOAD_BALANCER_FW, type: 'hash:ip,port', comment: 'Kubernetes service load balancer ip + port for load balancer with sourceRange' },
  { key: KUBE_LOAD_BALANCER_LOCAL, type: 'hash:ip,port', comment: 'Kubernetes service load balancer ip + port with externalTrafficPolicy=local' },
  { key: KUBE_LOAD_BALANCER_SOURCE_IP, type: 'hash:ip,port,ip', comment: 'Kubernetes service load balancer ip + port + source IP for packet filter purpose' },
  { key: KUBE_LOAD_BALANCER_SOURCE_CIDR, type: 'hash:ip,port,net', comment: 'Kubernetes service load balancer ip + port + source cidr for packet filter purpose' },
  { key: KUBE_NODE_PORT_TCP, type: 'bitmap:port', comment: 'Kubernetes nodeport TCP port for masquerade purpose' },
  { key: KUBE_NODE_PORT_LOCAL_TCP, type: 'bitmap:port', comment: 'Kubernetes nodeport TCP port with externalTrafficPolicy=local' },
  { key: KUBE_NODE_PORT_UDP, type: 'bitmap:port', comment: 'Kubernetes nodeport UDP port for masquerade purpose' },
  { key: KUBE_NODE_PORT_LOCAL_UDP, type: 'bitmap:port', comment: 'Kubernetes nodeport UDP port with externalTrafficPolicy=local' },
  { key: KUBE_NODE_PORT_SCTP, type: 'hash:ip,port', comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'" },
  { key: KUBE_NODE_PORT_LOCAL_SCTP, type: 'hash:ip,port', comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'" },
  { key: KUBE_HEALTH_CHECK_NODE_PORT, type: 'bitmap:port', comment: 'Kubernetes health check node port' },
  { key: KUBE_IPVS_IPS, type: 'hash:ip', comment: 'Kubernetes service IP list' },
];

// The iptables chains. KUBE-LOAD-BALANCER is both a chain and a set, hence the suffix.
export const KUBE_SERVICES_CHAIN = 'KUBE-SERVICES';
export const KUBE_POSTROUTING_CHAIN = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ_CHAIN = 'KUBE-MARK-MASQ';
export const KUBE_NODE_PORT_CHAIN = 'KUBE-NODE-PORT';
export const KUBE_LOAD_BALANCER_CHAIN = 'KUBE-LOAD-BALANCER';
export const KUBE_FORWARD_CHAIN = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL_CHAIN = 'KUBE-PROXY-FIREWALL';
export const KUBE_SOURCE_RANGES_FIREWALL_CHAIN = 'KUBE-SOURCE-RANGES-FIREWALL';
export const KUBE_IPVS_FILTER_CHAIN = 'KUBE-IPVS-FILTER';
export const KUBE_IPVS_OUT_FILTER_CHAIN = 'KUBE-IPVS-OUT-FILTER';

/** Our chains per table, in upstream's order. */
export const IPVS_CHAINS: Readonly<Record<'nat' | 'filter', readonly string[]>> = {
  nat: [KUBE_SERVICES_CHAIN, KUBE_POSTROUTING_CHAIN, KUBE_NODE_PORT_CHAIN, KUBE_LOAD_BALANCER_CHAIN, KUBE_MARK_MASQ_CHAIN],
  filter: [KUBE_FORWARD_CHAIN, KUBE_NODE_PORT_CHAIN, KUBE_PROXY_FIREWALL_CHAIN, KUBE_SOURCE_RANGES_FIREWALL_CHAIN, KUBE_IPVS_FILTER_CHAIN, KUBE_IPVS_OUT_FILTER_CHAIN],
};

/** Jumps from the built-in chains into ours, kept first in those chains. */
export const JUMP_RULES: readonly JumpRule[] = [
  jumpRule('nat', 'OUTPUT', KUBE_SERVICES_CHAIN, 'kubernetes service portals'),
  jumpRule('nat', 'PREROUTING', KUBE_SERVICES_CHAIN, 'kubernetes service portals'),
  jumpRule('nat', 'POSTROUTING', KUBE_POSTROUTING_CHAIN, 'kubernetes postrouting rules'),
  jumpRule('filter', 'FORWARD', KUBE_FORWARD_CHAIN, 'kubernetes forwarding rules'),
  jumpRule('filter', 'INPUT', KUBE_NODE_PORT_CHAIN, 'kubernetes health check rules'),
  jumpRule('filter', 'INPUT', KUBE_PROXY_FIREWALL_CHAIN, 'kube-proxy firewall rules'),
  jumpRule('filter', 'FORWARD', KUBE_PROXY_FIREWALL_CHAIN, 'kube-proxy firewall rules'),
  jumpRule('filter', 'INPUT', KUBE_IPVS_FILTER_CHAIN, 'kubernetes ipvs access filter'),
  jumpRule('filter', 'OUTPUT', KUBE_IPVS_OUT_FILTER_CHAIN, 'kubernetes ipvs access filter'),
];

/** upstream's `%#08x`: 0x4000 is written 0x004000. */
export function masqueradeMark(bit: number): string {
  return `0x${(2 ** bit).toString(16).padStart(6, '0')}`;
}

/** Per-process bounds: no single process or kernel transaction grows with the cluster. */
export const IPVSADM_BATCH_LINES = 20_000;
export const IPSET_BATCH_LINES = 20_000;
export const IP_BATCH_LINES = 5_000;
export const COMMAND_TIMEOUT_MS = 60_000;
