// Shared by this package's tests: a cluster fed through core's ProxyStateTracker (so states and
// change sets are the real ones), and payload parsing. Not exported from the package.

import { ProxyStateTracker, type ChangeSet, type IPFamily, type ProxyState } from '@kube-proxy-ts/core';
import { parseIptablesSave } from '@kube-proxy-ts/netfilter';
import { node as buildNode, type endpointSlice, type service } from '@kube-proxy-ts/testing';

type V1Service = ReturnType<typeof service>;
type V1EndpointSlice = ReturnType<typeof endpointSlice>;
type V1Node = ReturnType<typeof buildNode>;

/** Upstream's test constants. */
export const TEST_HOSTNAME = 'test-hostname';
export const TEST_NODE_IP = '192.168.0.2';
export const TEST_NODE_IPV6 = '2001:db8::1';
export const TEST_EXTERNAL_CLIENT = '203.0.113.2';
export const TEST_CLUSTER_CIDR = '10.0.0.0/8';

export class Cluster {
  private readonly tracker: ProxyStateTracker;
  private readonly services = new Map<string, V1Service>();
  private readonly slices = new Map<string, V1EndpointSlice>();
  private nodeObject: V1Node;

  constructor(
    readonly ipFamily: IPFamily = 'IPv4',
    nodeObject: V1Node = buildNode(TEST_HOSTNAME, { addresses: [ipFamily === 'IPv4' ? TEST_NODE_IP : TEST_NODE_IPV6] }),
  ) {
    this.tracker = new ProxyStateTracker({ ipFamily, nodeName: nodeObject.metadata!.name! });
    this.nodeObject = nodeObject;
    this.tracker.onNodeAdd(nodeObject);
    this.tracker.onNodeSynced();
    this.tracker.onServicesSynced();
    this.tracker.onEndpointSlicesSynced();
  }

  upsert(...objects: Array<V1Service | V1EndpointSlice>): this {
    for (const o of objects) {
      const key = `${o.metadata!.namespace}/${o.metadata!.name}`;
      if ('addressType' in o) {
        const prev = this.slices.get(key);
        if (prev) this.tracker.onEndpointSliceUpdate(prev, o);
        else this.tracker.onEndpointSliceAdd(o);
        this.slices.set(key, o);
      } else {
        const prev = this.services.get(key);
        if (prev) this.tracker.onServiceUpdate(prev, o);
        else this.tracker.onServiceAdd(o);
        this.services.set(key, o);
      }
    }
    return this;
  }

  deleteService(namespace: string, name: string): this {
    const key = `${namespace}/${name}`;
    const prev = this.services.get(key);
    if (prev) this.tracker.onServiceDelete(prev);
    this.services.delete(key);
    return this;
  }

  deleteSlice(namespace: string, name: string): this {
    const key = `${namespace}/${name}`;
    const prev = this.slices.get(key);
    if (prev) this.tracker.onEndpointSliceDelete(prev);
    this.slices.delete(key);
    return this;
  }

  updateNode(next: V1Node): this {
    this.tracker.onNodeUpdate(this.nodeObject, next);
    this.nodeObject = next;
    return this;
  }

  checkpoint(): { state: ProxyState; changes: ChangeSet } {
    return this.tracker.checkpoint();
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
