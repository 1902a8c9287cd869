// The fixed part of the userspace mode: the nat chains and jumps it owns, with upstream's legacy
// userspace names and comments (KUBE-PORTALS-CONTAINER from PREROUTING: traffic arriving from
// pods and the network; KUBE-PORTALS-HOST from OUTPUT: traffic the node itself sends; the
// KUBE-NODEPORT-CONTAINER/HOST pair for node ports, reached only for local destinations), and
// the numbers more than one file relies on.

import { jumpRule, type JumpRule } from '@kube-proxy-ts/netfilter';

export const CONTAINER_PORTAL_CHAIN = 'KUBE-PORTALS-CONTAINER';
export const HOST_PORTAL_CHAIN = 'KUBE-PORTALS-HOST';
export const CONTAINER_NODEPORT_CHAIN = 'KUBE-NODEPORT-CONTAINER';
export const HOST_NODEPORT_CHAIN = 'KUBE-NODEPORT-HOST';

export const PORTAL_CHAINS = [CONTAINER_PORTAL_CHAIN, HOST_PORTAL_CHAIN, CONTAINER_NODEPORT_CHAIN, HOST_NODEPORT_CHAIN] as const;
export type PortalChain = (typeof PORTAL_CHAINS)[number];

const CLUSTER_IP_JUMP_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
const NODE_PORT_JUMP_COMMENT = 'handle service NodePorts; NOTE: this must be the last rule in the chain';
const LOCAL_DESTINATION = ['-m', 'addrtype', '--dst-type', 'LOCAL'];

/** The jumps from the built-in nat chains into ours: the portal chains first, the node-port chains last. */
export const PORTAL_JUMPS: readonly JumpRule[] = [
  jumpRule('nat', 'PREROUTING', CONTAINER_PORTAL_CHAIN, CLUSTER_IP_JUMP_COMMENT),
  jumpRule('nat', 'OUTPUT', HOST_PORTAL_CHAIN, CLUSTER_IP_JUMP_COMMENT),
  jumpRule('nat', 'PREROUTING', CONTAINER_NODEPORT_CHAIN, NODE_PORT_JUMP_COMMENT, LOCAL_DESTINATION, 'last'),
  jumpRule('nat', 'OUTPUT', HOST_NODEPORT_CHAIN, NODE_PORT_JUMP_COMMENT, LOCAL_DESTINATION, 'last'),
];

/** Per-attempt connect timeouts, as upstream's userspace proxy used. */
export const ENDPOINT_DIAL_TIMEOUTS_MS: readonly number[] = [250, 500, 1000, 2000];

/** ClientIP pins cost memory, not descriptors: about 150 bytes each, so the total stays near 40 MiB. */
export const AFFINITY_CLIENTS = 262_144;
/** Pins one service port may hold: the default bound, and the balancer's without one. */
export const AFFINITY_CLIENTS_PER_SERVICE_PORT = 65_536;
