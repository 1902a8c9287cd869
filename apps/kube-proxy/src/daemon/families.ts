// Which IP families this node proxies. The primary family is that of the bind address when it
// names one, else of the node's first address, else IPv4; the other family is added when the node
// has an address of it or the cluster CIDR covers it (a dual-stack node).

import type { V1Node } from '@kubernetes/client-node';
import { ipFamilyOf, type IPFamily, type ProxyConfig } from '@kube-proxy-ts/core';

const UNSPECIFIED = new Set(['0.0.0.0', '::', '']);

export function nodeAddressFamilies(node: V1Node | undefined): IPFamily[] {
  const out: IPFamily[] = [];
  for (const a of node?.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    const f = ipFamilyOf(a.address);
    if (f && !out.includes(f)) out.push(f);
  }
  return out;
}

export function chooseFamilies(config: ProxyConfig, node: V1Node | undefined): IPFamily[] {
  const fromNode = nodeAddressFamilies(node);
  const bind = UNSPECIFIED.has(config.bindAddress) ? undefined : ipFamilyOf(config.bindAddress);
  const primary: IPFamily = bind ?? fromNode[0] ?? 'IPv4';
  const other: IPFamily = primary === 'IPv4' ? 'IPv6' : 'IPv4';
  const cidrFamilies = config.clusterCIDR
    .split(',')
    .map((c) => ipFamilyOf(c.trim().split('/')[0]))
    .filter((f): f is IPFamily => f !== undefined);
  return fromNode.includes(other) || cidrFamilies.includes(other) ? [primary, other] : [primary];
}
