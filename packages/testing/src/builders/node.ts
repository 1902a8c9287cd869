// node(): a V1Node, and nodeInfo(): core's NodeInfo for the same facts.

import type { V1Node, V1NodeAddress } from '@kubernetes/client-node';
import type { IPFamily, NodeInfo } from '@kube-proxy-ts/core';
import { ipFamilyOfAddress } from './ids.js';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';

export interface NodeOptions {
  labels?: Record<string, string>;
  /** Sets label topology.kubernetes.io/zone. */
  zone?: string;
  podCIDRs?: string[];
  /** A bare string is an InternalIP. Default: none. */
  addresses?: Array<string | V1NodeAddress>;
  /** Adds the ToBeDeletedByClusterAutoscaler taint (the node stops being eligible). */
  toBeDeleted?: boolean;
  /** Sets metadata.deletionTimestamp. */
  deleting?: boolean;
  resourceVersion?: string;
}

export type NodeMutator = (node: V1Node) => void;

/** A Node with the hostname label set (as the kubelet does) and the given facts. */
export function node(name: string, options: NodeOptions | NodeMutator = {}, mutate?: NodeMutator): V1Node {
  const opts: NodeOptions = typeof options === 'function' ? {} : options;
  const labels: Record<string, string> = { [HOSTNAME_LABEL]: name, ...opts.labels };
  if (opts.zone !== undefined) labels[ZONE_LABEL] = opts.zone;
  const n: V1Node = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      uid: `uid-node-${name}`,
      labels,
      ...(opts.deleting ? { deletionTimestamp: new Date(0) } : {}),
      ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}),
    },
    spec: {
      ...(opts.podCIDRs?.length ? { podCIDR: opts.podCIDRs[0], podCIDRs: [...opts.podCIDRs] } : {}),
      ...(opts.toBeDeleted
        ? { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', value: '1700000000', effect: 'NoSchedule' }] }
        : {}),
    },
    status: {
      addresses: [
        ...(opts.addresses ?? []).map((a) => (typeof a === 'string' ? { type: 'InternalIP', address: a } : { ...a })),
        { type: 'Hostname', address: name },
      ],
    },
  };
  if (typeof options === 'function') options(n);
  mutate?.(n);
  return n;
}

export interface NodeInfoOptions extends Omit<NodeOptions, 'addresses' | 'toBeDeleted' | 'deleting'> {
  name?: string;
  /** Addresses of any family; only those of `ipFamily` are kept. */
  addresses?: string[];
  ipFamily?: IPFamily;
  eligible?: boolean;
}

/** Core's NodeInfo (what a backend gets in its context), default name `node1`, no zone. */
export function nodeInfo(options: NodeInfoOptions = {}): NodeInfo {
  const family = options.ipFamily ?? 'IPv4';
  const name = options.name ?? 'node1';
  const labels: Record<string, string> = { [HOSTNAME_LABEL]: name, ...options.labels };
  if (options.zone !== undefined) labels[ZONE_LABEL] = options.zone;
  const ofFamily = (cidrOrIP: string) => ipFamilyOfAddress(cidrOrIP) === family;
  return {
    name,
    labels,
    zone: labels[ZONE_LABEL],
    podCIDRs: (options.podCIDRs ?? []).filter(ofFamily),
    addresses: (options.addresses ?? []).filter(ofFamily),
    eligible: options.eligible ?? true,
  };
}
