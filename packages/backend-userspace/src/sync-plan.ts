// From the desired state to the listeners the proxy needs: one per service port, or two when
// internal and external traffic follow different traffic policies (a listener cannot tell which
// portal a connection came through). Pure: no sockets, no rules.

import {
  categorizeEndpoints,
  externallyAccessible,
  servicePortNameString,
  type Endpoint,
  type ProxyState,
  type ServicePort,
  type ServicePortKey,
} from '@kube-proxy-ts/core';
import type { Portal } from './portals.js';

/** Which portals of the service port lead to the listener. */
export type ListenerScope = 'all' | 'internal' | 'external';

export interface ListenerPlan {
  /** `<service port key>` for scope "all", else `<key>#internal` / `<key>#external`. */
  readonly id: string;
  readonly servicePort: ServicePort;
  readonly scope: ListenerScope;
  readonly protocol: 'TCP' | 'UDP';
  /** The endpoints this listener balances over, in round-robin order. */
  readonly endpoints: readonly Endpoint[];
  /** ClientIP affinity timeout in ms; 0 for none. */
  readonly affinityTimeoutMs: number;
  readonly portals: readonly Portal[];
}

export interface SkippedServicePort {
  readonly key: ServicePortKey;
  readonly reason: string;
}

export interface Plan {
  readonly listeners: readonly ListenerPlan[];
  readonly skipped: readonly SkippedServicePort[];
}

export function planListeners(state: ProxyState): Plan {
  const listeners: ListenerPlan[] = [];
  const skipped: SkippedServicePort[] = [];
  const keys = [...state.services.keys()].sort();
  for (const key of keys) {
    const sp = state.services.get(key) as ServicePort;
    if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') {
      skipped.push({ key, reason: `protocol ${sp.protocol} is not supported by the userspace proxy` });
      continue;
    }
    const protocol = sp.protocol;
    const categorized = categorizeEndpoints(sp, state.endpoints.get(key) ?? [], state.node);
    const internal = sp.internalPolicyLocal ? categorized.localEndpoints : categorized.clusterEndpoints;
    const comment = servicePortNameString(sp.name);
    const affinityTimeoutMs = sp.sessionAffinity.type === 'ClientIP' ? sp.sessionAffinity.timeoutSeconds * 1000 : 0;
    const internalPortals: Portal[] = [];
    if (sp.clusterIP) {
      internalPortals.push({ kind: 'ClusterIP', ip: sp.clusterIP, port: sp.port, protocol, sourceRanges: [], comment });
    }
    const externalPortals: Portal[] = externallyAccessible(sp) ? externalPortalsOf(sp, protocol, comment) : [];
    const base = { servicePort: sp, protocol, affinityTimeoutMs };
    if (externalPortals.length === 0) {
      listeners.push({ ...base, id: key, scope: 'all', endpoints: internal, portals: internalPortals });
      continue;
    }
    if (sp.externalPolicyLocal === sp.internalPolicyLocal) {
      listeners.push({ ...base, id: key, scope: 'all', endpoints: internal, portals: [...internalPortals, ...externalPortals] });
      continue;
    }
    const external = sp.externalPolicyLocal ? categorized.localEndpoints : categorized.clusterEndpoints;
    listeners.push({ ...base, id: `${key}#internal`, scope: 'internal', endpoints: internal, portals: internalPortals });
    listeners.push({ ...base, id: `${key}#external`, scope: 'external', endpoints: external, portals: externalPortals });
  }
  return { listeners, skipped };
}

function externalPortalsOf(sp: ServicePort, protocol: 'TCP' | 'UDP', comment: string): Portal[] {
  const portals: Portal[] = [];
  for (const ip of sp.externalIPs) portals.push({ kind: 'ExternalIP', ip, port: sp.port, protocol, sourceRanges: [], comment });
  for (const ip of sp.loadBalancerVIPs) {
    portals.push({ kind: 'LoadBalancer', ip, port: sp.port, protocol, sourceRanges: sp.loadBalancerSourceRanges, comment });
  }
  if (sp.nodePort > 0) portals.push({ kind: 'NodePort', ip: undefined, port: sp.nodePort, protocol, sourceRanges: [], comment });
  return portals;
}
