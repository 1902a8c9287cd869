// `kube-proxy inspect` and `explain` in userspace mode: the data plane is this process's
// listeners, so the view is read from them as they are (port bound, open or closed, endpoints
// balanced over), and explain names the listener a destination's portal leads to.

import {
  cidrContains,
  emptyKernelServicePortView,
  finishKernelServicePortView,
  frontend,
  nodePortFrontend,
  servicePortNameString,
  type ExplainPacket,
  type Explanation,
  type IPFamily,
  type KernelServicePortView,
  type KernelView,
  type ServicePort,
} from '@kube-proxy-ts/core';
import type { ListenerPlan } from './sync-plan.js';
import type { Portal } from './portals.js';

/** A listener as it runs. */
export interface RunningListener {
  readonly plan: ListenerPlan;
  /** The port it holds. */
  readonly port: number;
  /** The socket is open (closed while there is no endpoint: clients are refused). */
  readonly serving: boolean;
  readonly activeConnections: number;
}

const portalFrontend = (p: Portal) => (p.ip === undefined ? nodePortFrontend(p.port, p.protocol) : frontend(p.ip, p.port, p.protocol));
const describe = (l: RunningListener) =>
  `listener ${l.plan.protocol} port ${l.port}${l.plan.scope === 'all' ? '' : ` (${l.plan.scope} traffic)`}, ${l.serving ? 'open' : 'closed'}, ${l.activeConnections} connections`;

export function userspaceKernelView(listeners: readonly RunningListener[], servicePorts: readonly ServicePort[], ipFamily: IPFamily): KernelView {
  const byKey = new Map<string, RunningListener[]>();
  for (const l of listeners) byKey.set(l.plan.servicePort.key, [...(byKey.get(l.plan.servicePort.key) ?? []), l]);
  const result: Record<string, KernelServicePortView> = {};
  for (const sp of servicePorts) {
    const v = emptyKernelServicePortView();
    for (const l of byKey.get(sp.key) ?? []) {
      v.objects.push(describe(l));
      const fronts = l.plan.portals.map(portalFrontend);
      v.frontends.push(...fronts);
      if (l.serving) v.endpoints.push(...l.plan.endpoints.map((ep) => ep.hostPort));
      else v.blocked.push(...fronts.map((f) => `${f} reject: listener closed, no endpoints`));
    }
    result[sp.key] = finishKernelServicePortView(v);
  }
  const wanted = new Set(servicePorts.map((sp) => sp.key));
  const unowned = listeners.filter((l) => !wanted.has(l.plan.servicePort.key)).map((l) => `${describe(l)} of ${l.plan.id}`).sort();
  return { mode: 'userspace', ipFamily, servicePorts: result, unowned };
}

/** The listener whose portal the destination meets, and the endpoints it balances over (round robin). */
export function userspaceExplain(listeners: readonly RunningListener[], packet: ExplainPacket, localAddresses: readonly string[], ipFamily: IPFamily): Explanation {
  const local = localAddresses.includes(packet.dst) || packet.dst.startsWith('127.');
  const srcLocal = localAddresses.includes(packet.src) || packet.src.startsWith('127.') || packet.src === '::1';
  const hits = listeners.flatMap((l) =>
    l.plan.portals
      .filter((p) => p.protocol === packet.protocol && p.port === packet.port && (p.ip === undefined ? local : p.ip === packet.dst))
      .map((p) => ({ l, p })),
  );
  const hit = hits[0];
  if (!hit) {
    return { mode: 'userspace', ipFamily, packet, paths: [{ steps: ['no portal'], probability: 1, masquerade: false, verdict: 'accept', reason: 'no service portal of this proxy at this destination' }] };
  }
  const { l, p } = hit;
  const steps = [`portal ${p.kind} ${portalFrontend(p)}`, describe(l)];
  const servicePort = servicePortNameString(l.plan.servicePort.name);
  const ranges = p.sourceRanges.length > 0 && !srcLocal ? p.sourceRanges : [];
  if (ranges.length > 0 && !ranges.some((r) => cidrContains(r, packet.src))) {
    return { mode: 'userspace', ipFamily, packet, servicePort, paths: [{ steps: [steps[0]!], probability: 1, masquerade: false, verdict: 'accept', reason: 'source outside loadBalancerSourceRanges: not steered to the listener' }] };
  }
  if (!l.serving || l.plan.endpoints.length === 0) {
    return { mode: 'userspace', ipFamily, packet, servicePort, paths: [{ steps, probability: 1, masquerade: false, verdict: 'reject', reason: 'no endpoints: the listener is closed' }] };
  }
  const share = Math.round((1 / l.plan.endpoints.length) * 1e6) / 1e6;
  return {
    mode: 'userspace',
    ipFamily,
    packet,
    servicePort,
    // The proxy opens its own connection to the endpoint: the endpoint sees the node as the client.
    paths: l.plan.endpoints.map((ep) => ({
      steps,
      endpoint: ep.hostPort,
      probability: share,
      masquerade: true,
      verdict: 'accept' as const,
      ...(l.plan.affinityTimeoutMs > 0 ? { reason: `ClientIP affinity: a client returning within ${l.plan.affinityTimeoutMs / 1000}s keeps its endpoint` } : {}),
    })),
  };
}
