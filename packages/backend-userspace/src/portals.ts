// The nat rules that steer service traffic into the proxy's listeners, written into the chains
// of layout.ts as one iptables-restore payload.

import { isIP } from 'node:net';
import type { IPFamily, Protocol } from '@kube-proxy-ts/core';
import { RestoreTableWriter } from '@kube-proxy-ts/netfilter';
import {
  CONTAINER_NODEPORT_CHAIN,
  CONTAINER_PORTAL_CHAIN,
  HOST_NODEPORT_CHAIN,
  HOST_PORTAL_CHAIN,
  PORTAL_CHAINS,
  type PortalChain,
} from './layout.js';

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
