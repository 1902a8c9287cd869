// Which endpoints this node may send a service port's traffic to, per traffic policy, as
// upstream's CategorizeEndpoints: Ready endpoints first, Serving-and-Terminating ones when no
// Ready one exists, and topology hints (same node, same zone) when every Ready endpoint has them.

import { compareEndpoints } from './endpoint-slice.js';
import type { Endpoint, NodeInfo, ServicePort } from './model.js';
import { usesClusterEndpoints, usesLocalEndpoints } from './service-port.js';

export interface CategorizedEndpoints {
  /** Endpoints for Cluster-policy traffic (topology applied); empty when the port never uses them. */
  readonly clusterEndpoints: readonly Endpoint[];
  /** Endpoints for Local-policy traffic; empty when the port never uses them or none is local. */
  readonly localEndpoints: readonly Endpoint[];
  /** The union of the two lists: every endpoint this node may reach. */
  readonly allReachableEndpoints: readonly Endpoint[];
  /** Whether the service has a usable endpoint anywhere in the cluster (even if none is reachable here). */
  readonly hasAnyEndpoints: boolean;
}

export type TopologyMode = '' | 'PreferSameZone' | 'PreferSameNode';

export interface CategorizeOptions {
  /**
   * Honour per-node hints (trafficDistribution PreferSameNode). Upstream's
   * PreferSameTrafficDistribution feature gate, on by default since 1.34.
   */
  readonly nodeHints?: boolean;
}

type NodeFacts = Pick<NodeInfo, 'name' | 'zone'>;

const isServingTerminating = (ep: Endpoint) => ep.serving && ep.terminating;

/**
 * The topology the hints allow: same node when every Ready endpoint has node hints and one names
 * this node; else same zone when every Ready endpoint has zone hints and one names this zone;
 * else none. Whether hints are present is the EndpointSlice controller's decision (it only adds
 * them for topology-mode Auto or a trafficDistribution), so the Service itself is not consulted.
 */
export function topologyModeFromHints(endpoints: readonly Endpoint[], node: NodeFacts, opts: CategorizeOptions = {}): TopologyMode {
  let anyReady = false;
  let allNodeHints = true;
  let forNode = false;
  let allZoneHints = true;
  let forZone = false;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    anyReady = true;
    if (!ep.nodeHints || ep.nodeHints.length === 0) allNodeHints = false;
    else if (ep.nodeHints.includes(node.name)) forNode = true;
    if (!ep.zoneHints || ep.zoneHints.length === 0) allZoneHints = false;
    else if (node.zone !== undefined && ep.zoneHints.includes(node.zone)) forZone = true;
  }
  if (!anyReady) return '';
  if ((opts.nodeHints ?? true) && allNodeHints && forNode) return 'PreferSameNode';
  if (allZoneHints && forZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: Endpoint, mode: TopologyMode, node: NodeFacts): boolean {
  switch (mode) {
    case '':
      return true;
    case 'PreferSameNode':
      return ep.nodeHints?.includes(node.name) ?? false;
    case 'PreferSameZone':
      return node.zone !== undefined && (ep.zoneHints?.includes(node.zone) ?? false);
  }
}

export function categorizeEndpoints(
  svcPort: ServicePort,
  endpoints: readonly Endpoint[],
  node: NodeFacts,
  opts: CategorizeOptions = {},
): CategorizedEndpoints {
  const empty: readonly Endpoint[] = [];
  if (endpoints.length === 0) return { clusterEndpoints: empty, localEndpoints: empty, allReachableEndpoints: empty, hasAnyEndpoints: false };

  let clusterEndpoints = empty;
  let localEndpoints = empty;
  let hasAnyEndpoints = false;
  let mode: TopologyMode = '';
  let localUsesTerminating = false;

  const useCluster = usesClusterEndpoints(svcPort);
  if (useCluster) {
    mode = topologyModeFromHints(endpoints, node, opts);
    clusterEndpoints = endpoints.filter((ep) => ep.ready && availableForTopology(ep, mode, node));
    // The topology mode only applies when some Ready endpoint matches it, so an empty list here
    // means no Ready endpoint exists anywhere: fall back to the terminating ones still serving.
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter(isServingTerminating);
    hasAnyEndpoints = clusterEndpoints.length > 0;
  }

  if (!usesLocalEndpoints(svcPort)) {
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints, hasAnyEndpoints };
  }

  let localReady = false;
  let localServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (ep.isLocal) localReady = true;
    } else if (isServingTerminating(ep)) {
      hasAnyEndpoints = true;
      if (ep.isLocal) localServingTerminating = true;
    }
  }
  if (localReady) {
    localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.ready);
  } else if (localServingTerminating) {
    localUsesTerminating = true;
    localEndpoints = endpoints.filter((ep) => ep.isLocal && isServingTerminating(ep));
  }

  if (!useCluster) {
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: localEndpoints, hasAnyEndpoints };
  }
  if (mode === '' && !localUsesTerminating) {
    // Every Ready endpoint is a cluster endpoint, and the local ones are Ready: already a superset.
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints, hasAnyEndpoints };
  }
  const union = new Map<string, Endpoint>();
  for (const ep of clusterEndpoints) union.set(ep.hostPort, ep);
  for (const ep of localEndpoints) union.set(ep.hostPort, ep);
  return { clusterEndpoints, localEndpoints, allReachableEndpoints: [...union.values()].sort(compareEndpoints), hasAnyEndpoints };
}

/** What this node does with one endpoint of a service port, and why. */
export interface EndpointSelection {
  readonly endpoint: Endpoint;
  /** Cluster-policy traffic may go to it. */
  readonly cluster: boolean;
  /** Local-policy traffic may go to it. */
  readonly local: boolean;
  /** Why it is left out of a policy the service port uses; absent when it is used wherever it could be. */
  readonly reason?: string;
}

/**
 * categorizeEndpoints' decision per endpoint, with the reason an endpoint is left out: not ready,
 * terminating while Ready endpoints exist, hinted for another zone or node, or on another node
 * under a Local traffic policy.
 */
export function endpointSelection(
  svcPort: ServicePort,
  endpoints: readonly Endpoint[],
  node: NodeFacts,
  opts: CategorizeOptions = {},
): EndpointSelection[] {
  const c = categorizeEndpoints(svcPort, endpoints, node, opts);
  const inCluster = new Set(c.clusterEndpoints);
  const inLocal = new Set(c.localEndpoints);
  const useCluster = usesClusterEndpoints(svcPort);
  const useLocal = usesLocalEndpoints(svcPort);
  const mode = useCluster ? topologyModeFromHints(endpoints, node, opts) : '';
  const policy = svcPort.internalPolicyLocal ? 'internalTrafficPolicy' : 'externalTrafficPolicy';
  return endpoints.map((ep) => {
    const cluster = inCluster.has(ep);
    const local = inLocal.has(ep);
    let reason: string | undefined;
    if (!ep.ready && !isServingTerminating(ep)) reason = ep.terminating ? 'terminating and not serving' : 'not ready';
    else if (!ep.ready && !cluster && !local) reason = 'terminating, and Ready endpoints exist';
    else if (useCluster && !cluster && ep.ready && !availableForTopology(ep, mode, node)) {
      reason = mode === 'PreferSameNode' ? 'topology hints: for other nodes' : `topology hints: for other zones (this node: ${node.zone ?? 'no zone'})`;
    } else if (useLocal && !local && !ep.isLocal) reason = `on another node (${ep.nodeName ?? 'unknown'}): ${policy} Local`;
    return { endpoint: ep, cluster, local, ...(reason !== undefined ? { reason } : {}) };
  });
}
