// A dual-stack node for the kernel backends' e2e suites: one sandbox with IPv4 and IPv6, the
// same Service objects fed to an IPv4 and an IPv6 instance of a backend (each takes its own
// family's ClusterIP and EndpointSlice), and the IPv6 traffic every kernel backend must carry.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { BackendContext, IPFamily } from '@kube-proxy-ts/core';
import { createSandbox, endpointSlice, node, removeLeftoverSandboxes, service, type ClusterFeed, type Sandbox } from '@kube-proxy-ts/testing';
import { expect, it } from 'vitest';
import { answers, expectRefusedAtOnce } from './traffic.js';

export const VIP4 = '10.96.0.10';
export const VIP6 = 'fd00:10:96::10';
export const NO_ENDPOINTS_VIP6 = 'fd00:10:96::11';
export const NODE_PORT = 30080;
export const POD_NAMES = new Set(['pod1', 'pod2']);
const TARGET_PORT = 8080;

/** A backend instance as a suite drives it: its feed of objects and a sync that must succeed. */
export interface Instance<B> {
  readonly backend: B;
  /** The context the backend started with. */
  readonly ctx: BackendContext;
  readonly feed: ClusterFeed;
  sync(): Promise<unknown>;
}

export type StartInstance<B> = (sb: Sandbox, ipFamily: IPFamily, nodeObject: V1Node, clusterCIDR: string) => Promise<Instance<B>>;

export interface DualStack<B> {
  readonly sb: Sandbox;
  readonly ipv4: Instance<B>;
  readonly ipv6: Instance<B>;
  /** What `snapshotIPv4` returned after the IPv4 instance's sync, before the IPv6 one started. */
  readonly ipv4Before: string;
}

/** Sets up the sandbox and both instances, IPv4 first; `snapshotIPv4` records the IPv4 side. */
export async function startDualStack<B>(tag: string, nodeName: string, start: StartInstance<B>, snapshotIPv4: (sb: Sandbox) => Promise<string>): Promise<DualStack<B>> {
  await removeLeftoverSandboxes(tag);
  const sb = await createSandbox({ tag, pods: 2, ports: [TARGET_PORT], ipv6: true });
  const { plan } = sb;
  const nodeObject = node(nodeName, { addresses: [plan.nodeIP, plan.ipv6.nodeIP], podCIDRs: [plan.podCIDR, plan.ipv6.podCIDR] });
  const slice = (name: string, ips: string[]) =>
    endpointSlice('default', 'web', { name, endpoints: ips.map((ip) => ({ ip, nodeName })), ports: [{ name: 'http', port: TARGET_PORT }] });
  const objects: (V1Service | V1EndpointSlice)[] = [
    service('default', 'web', { type: 'NodePort', clusterIPs: [VIP4, VIP6], ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT, nodePort: NODE_PORT }] }),
    slice('web-v4', sb.pods.map((p) => p.ip)),
    slice('web-v6', sb.pods.map((p) => p.ipv6!)),
    service('default', 'empty', { clusterIP: NO_ENDPOINTS_VIP6, ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] }),
  ];
  const ipv4 = await start(sb, 'IPv4', nodeObject, plan.clusterCIDR);
  ipv4.feed.upsert(...objects);
  await ipv4.sync();
  const ipv4Before = await snapshotIPv4(sb);
  const ipv6 = await start(sb, 'IPv6', nodeObject, plan.ipv6.clusterCIDR);
  ipv6.feed.upsert(...objects);
  await ipv6.sync();
  return { sb, ipv4, ipv6, ipv4Before };
}

/** ClusterIP from a pod, NodePort from outside, and no endpoints refused, all over IPv6. */
export function ipv6TrafficTests(get: () => Sandbox): void {
  it('an IPv6 ClusterIP reaches every endpoint from an in-cluster client', async () => {
    expect(await answers(get(), 'client', VIP6, 80, 16, POD_NAMES)).toEqual(POD_NAMES);
  });

  it("a NodePort on the node's IPv6 address reaches the endpoints from an external client", async () => {
    const sb = get();
    expect(await answers(sb, 'external', sb.node.ipv6!, NODE_PORT, 16, POD_NAMES)).toEqual(POD_NAMES);
  });

  it('refuses connections to an IPv6 service without endpoints at once', async () => {
    await expectRefusedAtOnce(get(), 'client', NO_ENDPOINTS_VIP6, 80);
  });
}
