// The nat rules that steer service traffic into the proxy's listeners, in upstream's legacy
// userspace layout: KUBE-PORTALS-CONTAINER (from PREROUTING: traffic arriving from pods and the
// network) and KUBE-PORTALS-HOST (from OUTPUT: traffic the node itself sends), plus the
// KUBE-NODEPORT-CONTAINER/HOST pair for node ports, reached only for local destinations.

import { isIP } from 'node:net';
import type { IPFamily, Protocol } from '@kube-proxy-ts/core';
import { RestoreTableWriter } from '@kube-proxy-ts/netfilter';

export const CONTAINER_PORTAL_CHAIN = 'KUBE-PORTALS-CONTAINER';
export const HOST_PORTAL_CHAIN = 'KUBE-PORTALS-HOST';
export const CONTAINER_NODEPORT_CHAIN = 'KUBE-NODEPORT-CONTAINER';
export const HOST_NODEPORT_CHAIN = 'KUBE-NODEPORT-HOST';

export const PORTAL_CHAINS = [CONTAINER_PORTAL_CHAIN, HOST_PORTAL_CHAIN, CONTAINER_NODEPORT_CHAIN, HOST_NODEPORT_CHAIN] as const;
export type PortalChain = (typeof PORTAL_CHAINS)[number];

/** A jump from a built-in nat chain into ours; the portal chains must come first. */
export interface PortalJump {
  readonly chain: 'PREROUTING' | 'OUTPUT';
  readonly position: 'first' | 'last';
  readonly args: readonly string[];
}

const CLUSTER_IP_JUMP_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
const NODE_PORT_JUMP_COMMENT = 'handle service NodePorts; NOTE: this must be the last rule in the chain';

export const PORTAL_JUMPS: readonly PortalJump[] = [
  { chain: 'PREROUTING', position: 'first', args: ['-m', 'comment', '--comment', CLUSTER_IP_JUMP_COMMENT, '-j', CONTAINER_PORTAL_CHAIN] },
  { chain: 'OUTPUT', position: 'first', args: ['-m', 'comment', '--comment', CLUSTER_IP_JUMP_COMMENT, '-j', HOST_PORTAL_CHAIN] },
  {
    chain: 'PREROUTING',
    position: 'last',
    args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODE_PORT_JUMP_COMMENT, '-j', CONTAINER_NODEPORT_CHAIN],
  },
  {
    chain: 'OUTPUT',
    position: 'last',
    args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODE_PORT_JUMP_COMMENT, '-j', HOST_NODEPORT_CHAIN],
  },
];

export type PortalKind = 'ClusterIP' | 'ExternalIP' | 'LoadBalancer' | 'NodePort';

/** One address:port (or node port) of a service port that leads to a listener. */
export interface Portal {
  readonly kind: PortalKind;
  /** The destination address; undefined for a node port (any local address). */
  readonly ip: string | undefined;
  readonly port: number;
  readonly protocol: Exclude<Protocol, 'SCTP'>;
  /** loadBalancerSourceRanges: only these sources are steered (LoadBalancer portals only). */
  readonly sourceRanges: readonly string[];
  /** The rule comment: upstream's ServicePortName string, `namespace/name:port`. */
  readonly comment: string;
}

/** Where the portal rules send traffic. */
export interface PortalTarget {
  readonly family: IPFamily;
  /** The address the proxy listens on; undefined when it listens on every address. */
  readonly listenIP: string | undefined;
  /**
   * A node address for traffic the node sends itself when listening on every address: REDIRECT
   * there would answer UDP from a loopback address the client never wrote to, so upstream DNATs
   * to a node address instead. Undefined falls back to REDIRECT.
   */
  readonly hostIP: string | undefined;
  /** The listener's port; inspect() passes a stable placeholder instead of the number. */
  readonly proxyPort: number | string;
  /** config.nodePortAddresses of this family: node ports only on these. Empty: every local address. */
  readonly nodePortCIDRs?: readonly string[];
}

export interface PortalRule {
  readonly chain: PortalChain;
  readonly args: readonly string[];
}

function hostCIDR(ip: string): string {
  return isIP(ip) === 6 ? `${ip}/128` : `${ip}/32`;
}

function joinHostPort(ip: string, port: number | string): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function jumpTo(address: string | undefined, port: number | string): string[] {
  return address === undefined ? ['-j', 'REDIRECT', '--to-ports', String(port)] : ['-j', 'DNAT', '--to-destination', joinHostPort(address, port)];
}

/** The rules of one portal, container chain first. */
export function portalRules(portal: Portal, target: PortalTarget): PortalRule[] {
  const proto = portal.protocol.toLowerCase();
  const match = ['-m', 'comment', '--comment', portal.comment, '-p', proto, '-m', proto, '--dport', String(portal.port)];
  const containerJump = jumpTo(target.listenIP, target.proxyPort);
  const hostJump = jumpTo(target.listenIP ?? target.hostIP, target.proxyPort);
  if (portal.ip === undefined) {
    const destinations = target.nodePortCIDRs?.length ? target.nodePortCIDRs : [undefined];
    const rules: PortalRule[] = [];
    for (const [chain, jump] of [[CONTAINER_NODEPORT_CHAIN, containerJump], [HOST_NODEPORT_CHAIN, hostJump]] as const) {
      for (const cidr of destinations) rules.push({ chain, args: [...match, ...(cidr ? ['-d', cidr] : []), ...jump] });
    }
    return rules;
  }
  const destination = [...match, '-d', hostCIDR(portal.ip)];
  const sources = portal.kind === 'LoadBalancer' && portal.sourceRanges.length > 0 ? portal.sourceRanges : [undefined];
  const rules: PortalRule[] = [];
  for (const chain of [CONTAINER_PORTAL_CHAIN, HOST_PORTAL_CHAIN] as const) {
    const jump = chain === CONTAINER_PORTAL_CHAIN ? containerJump : hostJump;
    for (const source of sources) {
      rules.push({ chain, args: [...destination, ...(source ? ['-s', source] : []), ...jump] });
    }
  }
  return rules;
}

/** The iptables-restore payload (nat table, for --noflush) holding exactly `rules`. */
export function portalsPayload(rules: readonly PortalRule[]): string {
  const nat = new RestoreTableWriter('nat');
  for (const chain of PORTAL_CHAINS) nat.declareChain(chain);
  // Container chains first, then host chains, keeping each chain's order.
  for (const chain of PORTAL_CHAINS) {
    for (const rule of rules) if (rule.chain === chain) nat.appendRule(chain, rule.args);
  }
  return nat.toString();
}

/** The payload that empties and deletes our chains; the jumps must be gone first. */
export function cleanupPayload(): string {
  const nat = new RestoreTableWriter('nat');
  for (const chain of PORTAL_CHAINS) nat.deleteChain(chain);
  return nat.toString();
}
