// V1Node -> NodeInfo for one IP family.

import type { V1Node } from '@kubernetes/client-node';
import { parseCIDR, parseIP } from './ip.js';
import type { IPFamily, NodeInfo } from './model.js';

export const LABEL_TOPOLOGY_ZONE = 'topology.kubernetes.io/zone';
/** Taint the cluster autoscaler puts on a node it is about to remove. */
export const TAINT_TO_BE_DELETED = 'ToBeDeletedByClusterAutoscaler';

/** Whether the node may keep receiving load-balancer traffic (upstream's proxy health rule). */
export function nodeEligible(node: V1Node): boolean {
  if (node.metadata?.deletionTimestamp) return false;
  return !(node.spec?.taints ?? []).some((t) => t.key === TAINT_TO_BE_DELETED);
}

/** What the proxy knows of a node before (or without) seeing its object. */
export function emptyNodeInfo(name: string): NodeInfo {
  return Object.freeze({ name, labels: Object.freeze({}), zone: undefined, podCIDRs: Object.freeze([]), addresses: Object.freeze([]), eligible: true });
}

export function nodeToNodeInfo(node: V1Node, family: IPFamily): NodeInfo {
  const labels = Object.freeze({ ...(node.metadata?.labels ?? {}) });
  const cidrs = node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];
  const podCIDRs: string[] = [];
  for (const raw of cidrs) {
    const c = parseCIDR(raw);
    if (c && c.family === family && !podCIDRs.includes(c.text)) podCIDRs.push(c.text);
  }
  const addresses: string[] = [];
  for (const a of node.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    const ip = parseIP(a.address);
    if (ip && ip.family === family && !addresses.includes(ip.text)) addresses.push(ip.text);
  }
  return Object.freeze({
    name: node.metadata?.name ?? '',
    labels,
    zone: labels[LABEL_TOPOLOGY_ZONE] || undefined,
    podCIDRs: Object.freeze(podCIDRs),
    addresses: Object.freeze(addresses),
    eligible: nodeEligible(node),
  });
}
