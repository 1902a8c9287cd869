// What one service port needs in the kube-proxy table: its chains (with rules), its affinity
// sets, its elements in the shared sets and maps, and the ranges of the endpoint maps its policy
// chains DNAT through. A function of the service port, its endpoints and the node (and of where
// the plan numbers the endpoints, which stays put while they do), so partial and full syncs
// compute the same objects.

import {
  categorizeEndpoints,
  cidrContains,
  externallyAccessible,
  servicePortNameString,
  usesClusterEndpoints,
  usesLocalEndpoints,
  type Endpoint,
  type NodeInfo,
  type ServicePort,
} from '@kube-proxy-ts/core';
import { joinRuleLines, nftablesLocalMatch, nftEndpointChainBase, nftServiceChainBase, type LocalTrafficDetector } from '@kube-proxy-ts/netfilter';
import { endpointsMapRule, type SlotRange } from './endpoint-maps.js';
import {
  AFFINITY_PREFIX,
  CLUSTER_IPS_SET,
  CLUSTER_POLICY_PREFIX,
  ENDPOINT_PREFIX,
  EXTERNAL_PREFIX,
  FIREWALL_IPS_MAP,
  FIREWALL_PREFIX,
  HAIRPIN_CONNECTIONS_SET,
  LOCAL_POLICY_PREFIX,
  NO_ENDPOINT_NODEPORTS_MAP,
  NO_ENDPOINT_SERVICES_MAP,
  REJECT_CHAIN,
  SERVICE_IPS_MAP,
  SERVICE_NODEPORTS_MAP,
  type NftFamily,
} from './layout.js';

/** A set element (value "") or map element, with an optional comment. */
export interface ElementValue {
  readonly value: string;
  readonly comment?: string;
}

/** A chain and its rules, one a line, in order: held as one string, not one per rule. */
export interface ChainRules {
  readonly name: string;
  readonly rules: string;
}

/** One element of a shared set or map (key `a . b . c`). */
export interface ServiceElement {
  readonly container: string;
  readonly key: string;
  readonly value: ElementValue;
}

/**
 * The backend holds one of these per service port for as long as it exists, so it is kept
 * small: arrays rather than maps (a service port has a few chains and elements), and the
 * common values shared.
 */
export interface ServiceObjects {
  readonly chains: readonly ChainRules[];
  /** Affinity set name -> timeout in seconds. */
  readonly affinitySets: ReadonlyMap<string, number>;
  readonly elements: readonly ServiceElement[];
  /** The endpoint-map ranges its policy chains DNAT through (chains of n >= 2 endpoints, no affinity). */
  readonly slots: readonly SlotRange[];
}

/** A set element's value, shared by every set element. */
const SET_ELEMENT: ElementValue = Object.freeze({ value: '' });
const NO_AFFINITY_SETS: ReadonlyMap<string, number> = new Map();
const NO_SLOTS: readonly SlotRange[] = [];

export interface RuleContext {
  readonly family: NftFamily;
  /** Which packets come from pods on this node; kind 'none' drops the rules that need it. */
  readonly localDetector: LocalTrafficDetector;
  /** The node's primary IP of this family, for loadBalancerSourceRanges that include the node. */
  readonly nodeIP: string | undefined;
  /** What marks a packet for masquerading in postrouting: `mark set mark or 0x004000`. */
  readonly masqueradeRule: string;
  /** Where a policy chain's endpoints (`address . port`, in numgen order) are numbered. */
  readonly endpointSlots: (chain: string, protocol: string, targets: readonly string[]) => SlotRange;
}

export function computeServiceObjects(
  svc: ServicePort,
  endpoints: readonly Endpoint[],
  node: NodeInfo,
  ctx: RuleContext,
): ServiceObjects {
  const ipX = ctx.family;
  const protocol = svc.protocol.toLowerCase();
  const base = nftServiceChainBase(svc.name);
  const clusterPolicyChain = CLUSTER_POLICY_PREFIX + base;
  const localPolicyChain = LOCAL_POLICY_PREFIX + base;
  const externalChain = EXTERNAL_PREFIX + base;
  const firewallChain = FIREWALL_PREFIX + base;
  const nameString = servicePortNameString(svc.name);
  const affinity = svc.sessionAffinity.type === 'ClientIP' ? svc.sessionAffinity.timeoutSeconds : 0;
  const ifLocal = nftablesLocalMatch(ctx.localDetector, false);

  const chains = new Map<string, string[]>();
  const affinitySets = new Map<string, number>();
  const elements = new Map<string, ServiceElement>();
  const addElement = (container: string, key: string, value: ElementValue): void => {
    elements.set(`${container} ${key}`, { container, key, value: value.value === '' && value.comment === undefined ? SET_ELEMENT : value });
  };
  const rules = (chain: string): string[] => {
    let r = chains.get(chain);
    if (!r) chains.set(chain, (r = []));
    return r;
  };

  const { clusterEndpoints, localEndpoints, allReachableEndpoints, hasAnyEndpoints } = categorizeEndpoints(svc, endpoints, node);
  const endpointNames = new Map<Endpoint, string>();
  if (affinity > 0) for (const ep of allReachableEndpoints) endpointNames.set(ep, nftEndpointChainBase(svc.name, ep.ip, ep.port));

  const usesClusterPolicyChain = clusterEndpoints.length > 0 && usesClusterEndpoints(svc);
  const usesLocalPolicyChain = localEndpoints.length > 0 && usesLocalEndpoints(svc);
  const internalChain = svc.internalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const hasInternalEndpoints = hasAnyEndpoints && (!svc.internalPolicyLocal || localEndpoints.length > 0);
  const externalPolicyChain = svc.externalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const hasExternalEndpoints = hasAnyEndpoints && (!svc.externalPolicyLocal || localEndpoints.length > 0);
  // The external chain also carries the short-circuit rules for local traffic, so it exists
  // whenever any endpoint does, even if none is usable for external traffic.
  const usesExternalChain = hasAnyEndpoints && externallyAccessible(svc);

  const internalFilterVerdict = hasAnyEndpoints ? (hasInternalEndpoints ? '' : 'drop') : `goto ${REJECT_CHAIN}`;
  const externalFilterVerdict = hasAnyEndpoints ? (hasExternalEndpoints ? '' : 'drop') : `goto ${REJECT_CHAIN}`;
  const port = String(svc.port);
  const ipKey = (ip: string): string => `${ip} . ${protocol} . ${port}`;
  const noEndpoint = (verdict: string): ElementValue => ({ value: verdict, comment: nameString });

  // ClusterIP
  addElement(CLUSTER_IPS_SET, svc.clusterIP, { value: '' });
  if (hasInternalEndpoints) addElement(SERVICE_IPS_MAP, ipKey(svc.clusterIP), { value: `goto ${internalChain}` });
  else addElement(NO_ENDPOINT_SERVICES_MAP, ipKey(svc.clusterIP), noEndpoint(internalFilterVerdict));

  // externalIPs and load-balancer IPs go through the external chain
  for (const ip of [...svc.externalIPs, ...svc.loadBalancerVIPs]) {
    if (hasAnyEndpoints) addElement(SERVICE_IPS_MAP, ipKey(ip), { value: `goto ${externalChain}` });
    if (!hasExternalEndpoints) addElement(NO_ENDPOINT_SERVICES_MAP, ipKey(ip), noEndpoint(externalFilterVerdict));
  }
  const usesFirewallChain = svc.loadBalancerVIPs.length > 0 && svc.loadBalancerSourceRanges.length > 0;
  if (usesFirewallChain) {
    for (const ip of svc.loadBalancerVIPs) addElement(FIREWALL_IPS_MAP, ipKey(ip), { value: `goto ${firewallChain}` });
  }

  // NodePort (not subject to loadBalancerSourceRanges, as upstream)
  if (svc.nodePort !== 0) {
    const key = `${protocol} . ${svc.nodePort}`;
    if (hasAnyEndpoints) addElement(SERVICE_NODEPORTS_MAP, key, { value: `goto ${externalChain}` });
    if (!hasExternalEndpoints) addElement(NO_ENDPOINT_NODEPORTS_MAP, key, noEndpoint(externalFilterVerdict));
  }

  // Chains exist in this order: policy chains, external, firewall, endpoints (affinity only).
  if (usesClusterPolicyChain) rules(clusterPolicyChain);
  if (usesLocalPolicyChain) rules(localPolicyChain);

  // ClusterIP traffic from outside the cluster (or all of it, with masqueradeAll) is marked in the
  // services chain, for every ClusterIP at once (setup.ts), as upstream.

  if (usesExternalChain) {
    const ext = rules(externalChain);
    if (!svc.externalPolicyLocal) {
      ext.push(`${ctx.masqueradeRule} comment "masquerade"`);
    } else {
      // Pod and host traffic to an external address acts as if it left and came back through
      // a load balancer: it may use any endpoint; host traffic is masqueraded.
      if (ifLocal) ext.push(`${ifLocal} goto ${clusterPolicyChain} comment "short-circuit pod traffic"`);
      ext.push(`fib saddr type local ${ctx.masqueradeRule} comment "masquerade local traffic"`);
      ext.push(`fib saddr type local goto ${clusterPolicyChain} comment "short-circuit local traffic"`);
    }
    if (hasExternalEndpoints) ext.push(`goto ${externalPolicyChain}`);
  }

  if (usesFirewallChain) {
    const sources = [...svc.loadBalancerSourceRanges];
    const allowFromNode = ctx.nodeIP !== undefined && svc.loadBalancerSourceRanges.some((cidr) => cidrContains(cidr, ctx.nodeIP!));
    // A VIP bound locally loops node traffic back with the VIP as source.
    if (allowFromNode) sources.push(...svc.loadBalancerVIPs);
    rules(firewallChain).push(`${ipX} saddr != { ${sources.join(', ')} } drop`);
  }

  // Session affinity needs a chain per endpoint (its rule updates the endpoint's affinity set),
  // as upstream. Without it the policy chain DNATs itself, with one rule: to its endpoint when it
  // has one, else through its range of an endpoint map, so that a change of endpoints adds
  // elements and rewrites that rule only (see layout.ts and endpoint-maps.ts).
  const dnat = (ep: Endpoint) => `meta l4proto ${protocol} dnat to ${ep.hostPort}`;
  const slots: SlotRange[] = [];
  const writeBalancing = (chain: string, eps: readonly Endpoint[]): void => {
    const r = rules(chain);
    if (affinity === 0) {
      if (eps.length === 1) {
        r.push(dnat(eps[0]!));
        return;
      }
      const range = ctx.endpointSlots(chain, protocol, eps.map((ep) => `${ep.ip} . ${ep.port}`));
      slots.push(range);
      r.push(endpointsMapRule(ipX, range));
      return;
    }
    for (const ep of eps) {
      const name = endpointNames.get(ep)!;
      r.push(`${ipX} saddr @${AFFINITY_PREFIX}${name} goto ${ENDPOINT_PREFIX}${name}`);
    }
    const targets = eps.map((ep, i) => `${i} : goto ${ENDPOINT_PREFIX}${endpointNames.get(ep)!}`);
    r.push(`numgen random mod ${eps.length} vmap { ${targets.join(' , ')} }`);
  };
  if (usesClusterPolicyChain) writeBalancing(clusterPolicyChain, clusterEndpoints);
  if (usesLocalPolicyChain) writeBalancing(localPolicyChain, localEndpoints);

  // hairpin: a local endpoint reaching itself through the service is masqueraded (in
  // postrouting, where the DNATed destination is known; see setup.ts). A remote endpoint's own
  // traffic never passes through this node's NAT.
  for (const ep of allReachableEndpoints) {
    if (ep.isLocal) addElement(HAIRPIN_CONNECTIONS_SET, `${ep.ip} . ${ep.ip} . ${protocol} . ${ep.port}`, { value: '' });
  }
  if (affinity > 0) {
    for (const ep of allReachableEndpoints) {
      const name = endpointNames.get(ep)!;
      affinitySets.set(AFFINITY_PREFIX + name, affinity);
      const r = rules(ENDPOINT_PREFIX + name);
      r.push(`update @${AFFINITY_PREFIX}${name} { ${ipX} saddr }`);
      r.push(dnat(ep));
    }
  }

  return {
    chains: [...chains].map(([name, r]) => ({ name, rules: joinRuleLines(name, r) })),
    affinitySets: affinitySets.size > 0 ? affinitySets : NO_AFFINITY_SETS,
    elements: [...elements.values()],
    slots: slots.length > 0 ? slots : NO_SLOTS,
  };
}

