// What `kube-proxy inspect` reports per service port: the Service as the proxy sees it, which
// endpoints this node uses and why the others are left out (core's endpoint selection), what the
// kernel holds for it and where that differs from what a sync would program now.

import {
  endpointSelection,
  externallyAccessible,
  servicePortDrift,
  servicePortNameString,
  type IPFamily,
  type KernelServicePortView,
  type KernelView,
  type ProxyState,
  type ServicePortDrift,
} from '@kube-proxy-ts/core';

export interface InspectedEndpoint {
  readonly endpoint: string;
  readonly node: string | null;
  readonly zone: string | null;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** Which traffic may go to it: "cluster", "local" (traffic policy Local), both or none. */
  readonly usedFor: readonly ('cluster' | 'local')[];
  readonly reason?: string;
}

export interface InspectedServicePort {
  /** `namespace/name:port` (upstream's ServicePortName). */
  readonly servicePort: string;
  readonly protocol: string;
  readonly ipFamily: IPFamily;
  readonly type: string;
  readonly clusterIP: string;
  readonly port: number;
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  readonly externalTrafficPolicy: 'Cluster' | 'Local' | null;
  readonly internalTrafficPolicy: 'Cluster' | 'Local';
  readonly sessionAffinity: string;
  readonly endpoints: readonly InspectedEndpoint[];
  /** Absent when the kernel could not be read (see the family's error) or the mode cannot read it back. */
  readonly kernel?: KernelServicePortView;
  /** Where the kernel differs from what a sync would program now; absent when it agrees. */
  readonly drift?: ServicePortDrift;
}

export interface InspectedFamily {
  readonly ipFamily: IPFamily;
  /** False until the first sync: no desired state to show yet. */
  readonly synced: boolean;
  /** Objects of this mode the kernel holds that no Service owns. */
  readonly unowned: readonly string[];
  /** Why the kernel view is missing. */
  readonly kernelError?: string;
}

export interface InspectReport {
  readonly mode: string;
  readonly families: readonly InspectedFamily[];
  readonly servicePorts: readonly InspectedServicePort[];
}

export interface FamilyReading {
  readonly ipFamily: IPFamily;
  readonly state: ProxyState | undefined;
  readonly kernel?: KernelView;
  readonly kernelError?: string;
}

/** `namespace/name` or `namespace/name:port` (port name, or number when unnamed). */
export function matchesService(filter: string | undefined, sp: { name: { namespace: string; name: string; port: string }; port: number }): boolean {
  if (!filter) return true;
  const svc = `${sp.name.namespace}/${sp.name.name}`;
  if (filter === svc) return true;
  return filter === `${svc}:${sp.name.port}` || filter === `${svc}:${sp.port}`;
}

export function buildInspectReport(mode: string, readings: readonly FamilyReading[], filter?: string): InspectReport {
  const families: InspectedFamily[] = [];
  const servicePorts: InspectedServicePort[] = [];
  for (const r of readings) {
    families.push({
      ipFamily: r.ipFamily,
      synced: r.state !== undefined,
      unowned: filter ? [] : (r.kernel?.unowned ?? []),
      ...(r.kernelError !== undefined ? { kernelError: r.kernelError } : {}),
    });
    if (!r.state) continue;
    for (const sp of r.state.services.values()) {
      if (!matchesService(filter, sp)) continue;
      const eps = r.state.endpoints.get(sp.key) ?? [];
      const kernel = r.kernel?.servicePorts[sp.key];
      const drift = r.kernel ? servicePortDrift(sp, eps, r.state.node, kernel) : undefined;
      servicePorts.push({
        servicePort: servicePortNameString(sp.name),
        protocol: sp.protocol,
        ipFamily: r.ipFamily,
        type: sp.type,
        clusterIP: sp.clusterIP,
        port: sp.port,
        nodePort: sp.nodePort,
        externalIPs: sp.externalIPs,
        loadBalancerIPs: sp.loadBalancerVIPs,
        loadBalancerSourceRanges: sp.loadBalancerSourceRanges,
        externalTrafficPolicy: externallyAccessible(sp) ? (sp.externalPolicyLocal ? 'Local' : 'Cluster') : null,
        internalTrafficPolicy: sp.internalPolicyLocal ? 'Local' : 'Cluster',
        sessionAffinity: sp.sessionAffinity.type === 'ClientIP' ? `ClientIP (${sp.sessionAffinity.timeoutSeconds}s)` : 'None',
        endpoints: endpointSelection(sp, eps, r.state.node).map((s) => ({
          endpoint: s.endpoint.hostPort,
          node: s.endpoint.nodeName ?? null,
          zone: s.endpoint.zone ?? null,
          ready: s.endpoint.ready,
          serving: s.endpoint.serving,
          terminating: s.endpoint.terminating,
          usedFor: [...(s.cluster ? ['cluster' as const] : []), ...(s.local ? ['local' as const] : [])],
          ...(s.reason !== undefined ? { reason: s.reason } : {}),
        })),
        ...(kernel ? { kernel } : {}),
        ...(drift ? { drift } : {}),
      });
    }
  }
  servicePorts.sort((a, b) => a.servicePort.localeCompare(b.servicePort) || a.protocol.localeCompare(b.protocol) || a.ipFamily.localeCompare(b.ipFamily));
  return { mode, families, servicePorts };
}
