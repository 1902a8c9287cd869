// Shared by this package's tests: a cluster fed through core's ProxyStateTracker (so states and
// change sets are the real ones), and payload parsing. Not exported from the package.

import type { IPFamily } from '@kube-proxy-ts/core';
import { parseIptablesSave } from '@kube-proxy-ts/netfilter';
import { ClusterFeed, node as buildNode, type ClusterFeedOptions } from '@kube-proxy-ts/testing';

/** Upstream's test constants. */
export const TEST_HOSTNAME = 'test-hostname';
export const TEST_NODE_IP = '192.168.0.2';
export const TEST_NODE_IPV6 = '2001:db8::1';
export const TEST_EXTERNAL_CLIENT = '203.0.113.2';
export const TEST_CLUSTER_CIDR = '10.0.0.0/8';

/** A cluster seen from TEST_HOSTNAME, whose node carries TEST_NODE_IP (or its IPv6 twin). */
export class Cluster extends ClusterFeed {
  constructor(ipFamily: IPFamily = 'IPv4', nodeObject: ClusterFeedOptions['node'] = buildNode(TEST_HOSTNAME, { addresses: [ipFamily === 'IPv4' ? TEST_NODE_IP : TEST_NODE_IPV6] })) {
    super({ ipFamily, node: nodeObject });
  }
}

/** Chains and their rules per table, from a restore payload or an iptables-save dump. */
export function chainsOf(payload: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const [table, chains] of parseIptablesSave(payload)) {
    out[table] = {};
    for (const [name, chain] of chains) out[table][name] = chain.rules;
  }
  return out;
}

/** Expected chains from upstream-style text: `-A CHAIN args` lines grouped by chain. */
export function expectedChains(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith(':')) out[line.slice(1).split(' ')[0]!] ??= [];
    if (!line.startsWith('-A ')) continue;
    const space = line.indexOf(' ', 3);
    const chain = line.slice(3, space);
    (out[chain] ??= []).push(line.slice(space + 1));
  }
  return out;
}
