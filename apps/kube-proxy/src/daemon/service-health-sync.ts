// From the programmed state of each IP family to what the health-check node-port servers serve:
// the services with externalTrafficPolicy Local and a healthCheckNodePort, and how many ready
// endpoints each has on this node.

import type { IPFamily, ProxyState } from '@kube-proxy-ts/core';
import type { NamespacedName } from '../server/service-health.js';

export interface ServiceHealthView {
  readonly ports: Map<NamespacedName, number>;
  readonly localEndpoints: Map<NamespacedName, number>;
}

/** Merges the families' views; the first family listed wins when both have a service. */
export function serviceHealthView(states: ReadonlyMap<IPFamily, ProxyState>): ServiceHealthView {
  const ports = new Map<NamespacedName, number>();
  const localEndpoints = new Map<NamespacedName, number>();
  for (const state of states.values()) {
    const seen = new Set<NamespacedName>();
    for (const [key, sp] of state.services) {
      if (!sp.externalPolicyLocal || sp.healthCheckNodePort <= 0) continue;
      const nsn = `${sp.name.namespace}/${sp.name.name}`;
      if (ports.has(nsn) && !seen.has(nsn)) continue;
      seen.add(nsn);
      ports.set(nsn, sp.healthCheckNodePort);
      const local = (state.endpoints.get(key) ?? []).filter((ep) => ep.isLocal && ep.ready).length;
      localEndpoints.set(nsn, Math.max(localEndpoints.get(nsn) ?? 0, local));
    }
  }
  return { ports, localEndpoints };
}
