// From the desired state to upstream's iptables rules. Pure: no I/O, so tests, the dry-run and
// the benchmark call it directly. The result keeps each service port's rules apart, so a sync
// can rewrite only what changed and reuse the rest from the previous computation.

import { BlockList } from 'node:net';
import {
  categorizeEndpoints,
  externallyAccessible,
  ipFamilyOf,
  servicePortNameString,
  usesClusterEndpoints,
  usesLocalEndpoints,
  type Endpoint,
  type IPFamily,
  type ProxyState,
  type ServicePort,
  type ServicePortKey,
} from '@kube-proxy-ts/core';
import {
  endpointChainName,
  formatRestoreLine,
  iptablesLocalMatch,
  joinRuleLines,
  NFACCT_CT_STATE_INVALID_DROPPED,
  NFACCT_LOCALHOST_NODEPORTS_ACCEPTED,
  ruleLines,
  servicePortChainNames,
  type LocalTrafficDetector,
} from '@kube-proxy-ts/netfilter';
import {
  KUBE_EXTERNAL_SERVICES,
  KUBE_FIREWALL,
  KUBE_FORWARD,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
  LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
  masqueradeMark,
  probability,
} from './layout.js';

export interface RuleOptions {
  readonly masqueradeAll: boolean;
  readonly masqueradeBit: number;
  readonly localDetector: LocalTrafficDetector;
  /** Localhost node ports are on (IPv4 only; already off when nodePortAddresses excludes 127.0.0.1). */
  readonly localhostNodePorts: boolean;
  /** MASQUERADE --random-fully (iptables >= 1.6.2). */
  readonly randomFully: boolean;
  /** nf_conntrack_tcp_be_liberal is set: no INVALID drop. */
  readonly conntrackTCPLiberal: boolean;
  /** Node ports on every local address (nodePortAddresses empty). */
  readonly nodePortsOnAllAddresses: boolean;
  /** When not on all addresses: the local addresses selected by nodePortAddresses. */
  readonly nodePortIPs: readonly string[];
  /** The node's primary IP of this family (loadBalancerSourceRanges that contain it admit the node). */
  readonly nodeIP: string | undefined;
  /** nfacct objects that exist on the node; rules count into them only then (a missing one fails the restore). */
  readonly nfacctCounters?: ReadonlySet<string>;
}

/** `-m nfacct` counting into `name`, where the node has that object. */
function nfacct(options: RuleOptions, name: string): string[] {
  return options.nfacctCounters?.has(name) ? ['-m', 'nfacct', '--nfacct-name', name] : [];
}

/** One service port's share of the rules. Lines are the arguments after `-A CHAIN`. */
export interface ServicePortRules {
  readonly natServices: readonly string[];
  readonly natNodePorts: readonly string[];
  readonly filterServices: readonly string[];
  readonly filterExternalServices: readonly string[];
  readonly filterNodePorts: readonly string[];
  readonly filterFirewall: readonly string[];
  /**
   * Per-service nat chains (KUBE-EXT/FW/SVC/SVL/SEP) in declaration order, with their rules
   * (joinRuleLines). Once released (releaseChainRules), rebuilt from the service port at each read.
   */
  readonly chains: ReadonlyMap<string, string>;
  /** The keys of `chains`, in order; kept when the rules are released. */
  readonly chainNames: readonly string[];
  readonly noLocalEndpointsInternal: boolean;
  readonly noLocalEndpointsExternal: boolean;
}

/** What serviceRules() reads besides the service port and its endpoints; one per computation. */
interface ServiceRulesContext {
  readonly state: Pick<ProxyState, 'node' | 'ipFamily'>;
  readonly options: RuleOptions;
  readonly largeClusterMode: boolean;
}

/**
 * A service port's rules that can let go of its chains' text: a sync keeps the rules of every
 * service port (10^5 chains, most of the retained memory at 10k services) but reads that text
 * again only for chains it rewrites or for inspect(). The service port, its endpoints and the
 * context are the objects the state holds anyway, and serviceRules() is pure, so the text
 * rebuilt from them is the text that was written.
 */
class RetainableServicePortRules implements ServicePortRules {
  private held: ReadonlyMap<string, string> | undefined;
  readonly chainNames: readonly string[];

  constructor(
    readonly natServices: readonly string[],
    readonly natNodePorts: readonly string[],
    readonly filterServices: readonly string[],
    readonly filterExternalServices: readonly string[],
    readonly filterNodePorts: readonly string[],
    readonly filterFirewall: readonly string[],
    chains: ReadonlyMap<string, string>,
    readonly noLocalEndpointsInternal: boolean,
    readonly noLocalEndpointsExternal: boolean,
    private readonly svc: ServicePort,
    private readonly endpoints: readonly Endpoint[],
    private readonly context: ServiceRulesContext,
  ) {
    this.held = chains;
    this.chainNames = chains.size === 0 ? NO_RULES : [...chains.keys()];
  }

  get chains(): ReadonlyMap<string, string> {
    return this.held ?? serviceRulesIn(this.svc, this.endpoints, this.context).chains;
  }

  release(): void {
    this.held = undefined;
  }
}

/** Lets `rules` drop its chains' text; `chains` is then rebuilt on each read (same text). */
export function releaseChainRules(rules: ServicePortRules): void {
  if (rules instanceof RetainableServicePortRules) rules.release();
}

export interface RuleSet {
  readonly ipFamily: IPFamily;
  /** Top-level filter chains with their rules. */
  readonly filter: ReadonlyMap<string, readonly string[]>;
  /** Top-level nat chains with their rules. */
  readonly nat: ReadonlyMap<string, readonly string[]>;
  /** Per service port, sorted by key. */
  readonly services: ReadonlyMap<ServicePortKey, ServicePortRules>;
  readonly largeClusterMode: boolean;
  readonly totalEndpoints: number;
  /** What the per-service rules depend on besides the service itself; reuse needs it unchanged. */
  readonly fingerprint: string;
  /** Service ports left out because their data could not be written safely. */
  readonly skipped: ReadonlyMap<ServicePortKey, string>;
}

export interface ComputeOptions {
  /** The previous result: service ports not in `changed` are reused from it when possible. */
  readonly previous?: RuleSet;
  /** Service ports to recompute; the others are reused from `previous` (all when absent). */
  readonly changed?: ReadonlySet<ServicePortKey>;
}

const fmt = formatRestoreLine;

// Chain names are sha256 hashes: remember them across syncs (bounded, cleared when full).
const NAME_CACHE_LIMIT = 500_000;
const nameCache = new Map<string, unknown>();
function cachedName<T>(key: string, make: () => T): T {
  let name = nameCache.get(key) as T | undefined;
  if (name === undefined) {
    if (nameCache.size >= NAME_CACHE_LIMIT) nameCache.clear();
    name = make();
    nameCache.set(key, name);
  }
  return name;
}

function validCIDR(cidr: string, family: IPFamily): boolean {
  const [address = '', prefix = '', ...rest] = cidr.split('/');
  const bits = Number(prefix);
  return rest.length === 0 && ipFamilyOf(address) === family && prefix !== '' && Number.isInteger(bits) && bits >= 0 && bits <= (family === 'IPv4' ? 32 : 128);
}

function cidrContains(cidr: string, ip: string, family: IPFamily): boolean {
  const [address = '', prefix = ''] = cidr.split('/');
  const list = new BlockList();
  const type = family === 'IPv4' ? 'ipv4' : 'ipv6';
  list.addSubnet(address, Number(prefix), type);
  return list.check(ip, type);
}

/** Why a service port cannot be written, or undefined. Guards the payload against bad data. */
function invalidReason(svc: ServicePort, endpoints: readonly Endpoint[], family: IPFamily): string | undefined {
  if (ipFamilyOf(svc.clusterIP) !== family) return `clusterIP ${svc.clusterIP} is not an ${family} address`;
  const port = (p: number) => Number.isInteger(p) && p > 0 && p < 65536;
  if (!port(svc.port)) return `port ${svc.port} is invalid`;
  if (svc.nodePort !== 0 && !port(svc.nodePort)) return `nodePort ${svc.nodePort} is invalid`;
  if (svc.healthCheckNodePort !== 0 && !port(svc.healthCheckNodePort)) return `healthCheckNodePort ${svc.healthCheckNodePort} is invalid`;
  for (const ip of [...svc.externalIPs, ...svc.loadBalancerVIPs]) if (ipFamilyOf(ip) !== family) return `address ${ip} is not an ${family} address`;
  for (const cidr of svc.loadBalancerSourceRanges) if (!validCIDR(cidr, family)) return `source range ${cidr} is not an ${family} CIDR`;
  for (const ep of endpoints) if (ipFamilyOf(ep.ip) !== family || !port(ep.port)) return `endpoint ${ep.hostPort} is invalid`;
  return undefined;
}

function fingerprintOf(options: RuleOptions, largeClusterMode: boolean, state: ProxyState): string {
  return JSON.stringify([options.masqueradeAll, options.masqueradeBit, options.localDetector, options.localhostNodePorts, options.nodeIP, largeClusterMode, state.node.name, state.node.zone, state.ipFamily]);
}

/** Service keys in order; the previous order when the set of services did not change. */
function sortedKeys(state: ProxyState, previous: RuleSet | undefined): ServicePortKey[] {
  // previous.services is in key order already.
  if (previous && previous.skipped.size === 0 && previous.services.size === state.services.size) {
    let same = true;
    for (const key of state.services.keys()) {
      if (!previous.services.has(key)) {
        same = false;
        break;
      }
    }
    if (same) return [...previous.services.keys()];
  }
  return [...state.services.keys()].sort();
}

/**
 * Computes a node's rules service port by service port, so a large sync can apply the first
 * service ports' chains while it computes the next ones.
 */
export class RuleSetBuilder {
  readonly largeClusterMode: boolean;
  readonly fingerprint: string;
  readonly totalEndpoints: number;
  private readonly reuse: RuleSet | undefined;
  private readonly keys: ServicePortKey[];
  private readonly services = new Map<ServicePortKey, ServicePortRules>();
  private readonly skipped = new Map<ServicePortKey, string>();
  private readonly context: ServiceRulesContext;
  private next = 0;

  constructor(
    private readonly state: ProxyState,
    private readonly options: RuleOptions,
    private readonly compute: ComputeOptions = {},
  ) {
    let totalEndpoints = 0;
    for (const key of state.services.keys()) totalEndpoints += state.endpoints.get(key)?.length ?? 0;
    this.totalEndpoints = totalEndpoints;
    this.largeClusterMode = totalEndpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    this.fingerprint = fingerprintOf(options, this.largeClusterMode, state);
    // Not the state itself: released rules keep their context, and the state's maps would go with it.
    this.context = { state: { node: state.node, ipFamily: state.ipFamily }, options, largeClusterMode: this.largeClusterMode };
    this.reuse = compute.previous && compute.changed && compute.previous.fingerprint === this.fingerprint ? compute.previous : undefined;
    this.keys = sortedKeys(state, this.reuse);
  }

  /** Service ports in the state. */
  get size(): number {
    return this.keys.length;
  }

  get done(): boolean {
    return this.next >= this.keys.length;
  }

  /** The rules of the next (up to) `count` service ports, in key order; invalid ones are skipped. */
  advance(count: number): Array<[ServicePortKey, ServicePortRules]> {
    const out: Array<[ServicePortKey, ServicePortRules]> = [];
    const end = Math.min(this.keys.length, this.next + count);
    for (; this.next < end; this.next++) {
      const key = this.keys[this.next]!;
      const rules = this.rulesOf(key);
      if (rules) out.push([key, rules]);
    }
    return out;
  }

  private rulesOf(key: ServicePortKey): ServicePortRules | undefined {
    const svc = this.state.services.get(key)!;
    let rules = this.reuse && !this.compute.changed!.has(key) ? this.reuse.services.get(key) : undefined;
    if (!rules) {
      const endpoints = this.state.endpoints.get(key) ?? [];
      const reason = invalidReason(svc, endpoints, this.state.ipFamily);
      if (reason) {
        this.skipped.set(key, reason);
        return undefined;
      }
      rules = serviceRulesIn(svc, endpoints, this.context);
    }
    this.services.set(key, rules);
    return rules;
  }

  /** Computes what is left and the top-level chains. */
  finish(): RuleSet {
    this.advance(this.keys.length);
    return topLevelRules(this.state, this.options, this.services, this.skipped, this);
  }
}

/** KUBE-MARK-MASQ's rule. */
export function markMasqRules(masqueradeBit: number): string[] {
  return [fmt(['-j', 'MARK', '--or-mark', masqueradeMark(masqueradeBit)])];
}

/** Computes every rule this node needs for `state`. */
export function computeRules(state: ProxyState, options: RuleOptions, compute: ComputeOptions = {}): RuleSet {
  return new RuleSetBuilder(state, options, compute).finish();
}

const NO_RULES: readonly string[] = Object.freeze([]);

function exact(rules: string[]): readonly string[] {
  return rules.length === 0 ? NO_RULES : rules.slice();
}

function topLevelRules(
  state: ProxyState,
  options: RuleOptions,
  services: ReadonlyMap<ServicePortKey, ServicePortRules>,
  skipped: ReadonlyMap<ServicePortKey, string>,
  { largeClusterMode, totalEndpoints, fingerprint }: Pick<RuleSetBuilder, 'largeClusterMode' | 'totalEndpoints' | 'fingerprint'>,
): RuleSet {
  const family = state.ipFamily;
  const mark = masqueradeMark(options.masqueradeBit);
  // Top-level chains: each service's share in key order, then the fixed tails.
  const natServices: string[] = [];
  const natNodePorts: string[] = [];
  const filterServices: string[] = [];
  const filterExternal: string[] = [];
  const filterNodePorts: string[] = [];
  const filterFirewall: string[] = [];
  for (const rules of services.values()) {
    for (const line of rules.natServices) natServices.push(line);
    for (const line of rules.natNodePorts) natNodePorts.push(line);
    for (const line of rules.filterServices) filterServices.push(line);
    for (const line of rules.filterExternalServices) filterExternal.push(line);
    for (const line of rules.filterNodePorts) filterNodePorts.push(line);
    for (const line of rules.filterFirewall) filterFirewall.push(line);
  }
  const nodePortsComment = ['-m', 'comment', '--comment', 'kubernetes service nodeports; NOTE: this must be the last rule in this chain'];
  if (options.nodePortsOnAllAddresses) {
    const destinations = ['-m', 'addrtype', '--dst-type', 'LOCAL'];
    // Localhost node ports never work on IPv6, and on IPv4 only with route_localnet.
    if (family === 'IPv6') destinations.push('!', '-d', '::1/128');
    else if (!options.localhostNodePorts) destinations.push('!', '-d', '127.0.0.0/8');
    natServices.push(fmt([...nodePortsComment, ...destinations, '-j', KUBE_NODEPORTS]));
  } else {
    for (const ip of options.nodePortIPs) {
      if (ipFamilyOf(ip) !== family) continue;
      const loopback = family === 'IPv6' ? ip === '::1' : ip.startsWith('127.');
      if (loopback && (family === 'IPv6' || !options.localhostNodePorts)) continue;
      natServices.push(fmt([...nodePortsComment, '-d', ip, '-j', KUBE_NODEPORTS]));
    }
  }

  const postrouting = [
    fmt(['-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN']),
    // Clear the mark so a packet that traverses the stack again is not masqueraded twice.
    fmt(['-j', 'MARK', '--xor-mark', mark]),
    fmt(['-m', 'comment', '--comment', 'kubernetes service traffic requiring SNAT', '-j', 'MASQUERADE', ...(options.randomFully ? ['--random-fully'] : [])]),
  ];
  const nat = new Map<string, readonly string[]>([
    [KUBE_SERVICES, natServices],
    [KUBE_NODEPORTS, natNodePorts],
    [KUBE_POSTROUTING, postrouting],
    [KUBE_MARK_MASQ, markMasqRules(options.masqueradeBit)],
  ]);

  const forward: string[] = [];
  if (!options.conntrackTCPLiberal) forward.push(fmt(['-m', 'conntrack', '--ctstate', 'INVALID', ...nfacct(options, NFACCT_CT_STATE_INVALID_DROPPED), '-j', 'DROP']));
  forward.push(fmt(['-m', 'comment', '--comment', 'kubernetes forwarding rules', '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT']));
  forward.push(fmt(['-m', 'comment', '--comment', 'kubernetes forwarding conntrack rule', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']));
  const filter = new Map<string, readonly string[]>([
    [KUBE_SERVICES, filterServices],
    [KUBE_EXTERNAL_SERVICES, filterExternal],
    [KUBE_FORWARD, forward],
    [KUBE_NODEPORTS, filterNodePorts],
    [KUBE_PROXY_FIREWALL, filterFirewall],
  ]);
  if (family === 'IPv4' && options.localhostNodePorts) {
    // route_localnet opens 127.0.0.0/8 to the outside (https://issue.k8s.io/90259): kubelet's
    // mitigation, duplicated as upstream does.
    filter.set(KUBE_FIREWALL, [
      fmt(['-m', 'comment', '--comment', 'block incoming localnet connections', '-d', '127.0.0.0/8', '!', '-s', '127.0.0.0/8', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP']),
    ]);
  } else if (family === 'IPv6') {
    // Upstream ensures kubelet's chain and its jumps in both families; IPv6 has nothing to block
    // (kubelet's own IPv6 KUBE-FIREWALL is empty too, so declaring it removes nothing of kubelet's).
    filter.set(KUBE_FIREWALL, []);
  }

  return { ipFamily: family, filter, nat, services, largeClusterMode, totalEndpoints, fingerprint, skipped };
}

/** The rules of one service port (upstream's per-service loop body). */
export function serviceRules(
  svc: ServicePort,
  endpoints: readonly Endpoint[],
  state: Pick<ProxyState, 'node' | 'ipFamily'>,
  options: RuleOptions,
  largeClusterMode: boolean,
): ServicePortRules {
  return serviceRulesIn(svc, endpoints, { state: { node: state.node, ipFamily: state.ipFamily }, options, largeClusterMode });
}

function serviceRulesIn(svc: ServicePort, endpoints: readonly Endpoint[], context: ServiceRulesContext): ServicePortRules {
  const { state, options, largeClusterMode } = context;
  const name = servicePortNameString(svc.name);
  const protocol = svc.protocol.toLowerCase();
  const chainNames = cachedName(`${name}\u0000${svc.protocol}`, () => servicePortChainNames(name, svc.protocol));
  const proto = ['-m', protocol, '-p', protocol];
  const port = String(svc.port);
  const comment = (text: string) => ['-m', 'comment', '--comment', text];
  const maybeComment = (text: string) => (largeClusterMode ? [] : comment(text));
  const localMatch = iptablesLocalMatch(options.localDetector, false);
  const notLocalMatch = iptablesLocalMatch(options.localDetector, true);
  const detectorImplemented = options.localDetector.kind !== 'none';

  const { clusterEndpoints, localEndpoints, allReachableEndpoints, hasAnyEndpoints } = categorizeEndpoints(svc, endpoints, state.node);
  const hasEndpoints = hasAnyEndpoints;
  const clusterPolicyChain = chainNames.clusterPolicy;
  const localPolicyChain = chainNames.localPolicy;
  const usesClusterPolicyChain = clusterEndpoints.length > 0 && usesClusterEndpoints(svc);
  const usesLocalPolicyChain = localEndpoints.length > 0 && usesLocalEndpoints(svc);

  let internalTrafficChain = clusterPolicyChain;
  let hasInternalEndpoints = hasEndpoints;
  if (svc.internalPolicyLocal) {
    internalTrafficChain = localPolicyChain;
    if (localEndpoints.length === 0) hasInternalEndpoints = false;
  }
  let externalPolicyChain = clusterPolicyChain;
  let hasExternalEndpoints = hasEndpoints;
  if (svc.externalPolicyLocal) {
    externalPolicyChain = localPolicyChain;
    if (localEndpoints.length === 0) hasExternalEndpoints = false;
  }
  const externalTrafficChain = chainNames.external;
  // The EXT chain also carries the short-circuit for pod/node traffic, so it exists as soon as
  // any endpoint exists, even when none is usable for external traffic.
  const usesExternalTrafficChain = hasEndpoints && externallyAccessible(svc);
  const usesFWChain = hasEndpoints && svc.loadBalancerVIPs.length > 0 && svc.loadBalancerSourceRanges.length > 0;
  const loadBalancerTrafficChain = usesFWChain ? chainNames.firewall : externalTrafficChain;

  let internalFilterTarget = '';
  let internalFilterComment = '';
  let externalFilterTarget = '';
  let externalFilterComment = '';
  let noLocalEndpointsInternal = false;
  let noLocalEndpointsExternal = false;
  if (!hasEndpoints) {
    internalFilterTarget = externalFilterTarget = 'REJECT';
    internalFilterComment = externalFilterComment = `${name} has no endpoints`;
  } else {
    if (!hasInternalEndpoints) {
      internalFilterTarget = 'DROP';
      internalFilterComment = `${name} has no local endpoints`;
      noLocalEndpointsInternal = true;
    }
    if (!hasExternalEndpoints) {
      externalFilterTarget = 'DROP';
      externalFilterComment = `${name} has no local endpoints`;
      noLocalEndpointsExternal = true;
    }
  }

  const natServices: string[] = [];
  const natNodePorts: string[] = [];
  const filterServices: string[] = [];
  const filterExternalServices: string[] = [];
  const filterNodePorts: string[] = [];
  const filterFirewall: string[] = [];

  const clusterIPMatch = [...proto, '-d', svc.clusterIP, '--dport', port];
  if (hasInternalEndpoints) {
    natServices.push(fmt([...comment(`${name} cluster IP`), ...clusterIPMatch, '-j', internalTrafficChain]));
  } else {
    filterServices.push(fmt([...comment(internalFilterComment), ...clusterIPMatch, '-j', internalFilterTarget]));
  }

  for (const ip of svc.externalIPs) {
    const match = [...proto, '-d', ip, '--dport', port];
    if (hasEndpoints) natServices.push(fmt([...comment(`${name} external IP`), ...match, '-j', externalTrafficChain]));
    if (!hasExternalEndpoints) filterExternalServices.push(fmt([...comment(externalFilterComment), ...match, '-j', externalFilterTarget]));
  }

  for (const ip of svc.loadBalancerVIPs) {
    const match = [...proto, '-d', ip, '--dport', port];
    if (hasEndpoints) natServices.push(fmt([...comment(`${name} loadbalancer IP`), ...match, '-j', loadBalancerTrafficChain]));
    if (usesFWChain) filterFirewall.push(fmt([...comment(`${name} traffic not accepted by ${chainNames.firewall}`), ...match, '-j', 'DROP']));
  }
  if (!hasExternalEndpoints) {
    for (const ip of svc.loadBalancerVIPs) {
      filterExternalServices.push(fmt([...comment(externalFilterComment), ...proto, '-d', ip, '--dport', port, '-j', externalFilterTarget]));
    }
  }

  if (svc.nodePort !== 0) {
    const nodePort = String(svc.nodePort);
    // Node ports are not subject to loadBalancerSourceRanges (as upstream).
    if (hasEndpoints) {
      // Upstream counts node ports reached on 127.0.0.0/8 in a rule of their own, before the general one.
      if (options.localhostNodePorts && state.ipFamily === 'IPv4' && options.nfacctCounters?.has(NFACCT_LOCALHOST_NODEPORTS_ACCEPTED)) {
        natNodePorts.push(fmt([...comment(name), ...proto, '-d', '127.0.0.0/8', '--dport', nodePort, ...nfacct(options, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED), '-j', externalTrafficChain]));
      }
      natNodePorts.push(fmt([...comment(name), ...proto, '--dport', nodePort, '-j', externalTrafficChain]));
    }
    if (!hasExternalEndpoints) {
      filterExternalServices.push(fmt([...comment(externalFilterComment), '-m', 'addrtype', '--dst-type', 'LOCAL', ...proto, '--dport', nodePort, '-j', externalFilterTarget]));
    }
  }

  if (svc.healthCheckNodePort !== 0) {
    filterNodePorts.push(fmt([...comment(`${name} health check node port`), '-m', 'tcp', '-p', 'tcp', '--dport', String(svc.healthCheckNodePort), '-j', 'ACCEPT']));
  }

  // Per-service nat chains. Map order = declaration order (EXT, FW, SVC, SVL, SEP...).
  const chains = new Map<string, string[]>();
  const chain = (n: string): string[] => {
    let rules = chains.get(n);
    if (!rules) chains.set(n, (rules = []));
    return rules;
  };
  // Declared up front so the masquerade rule of the internal chain comes before its endpoints.
  if (usesExternalTrafficChain) chain(externalTrafficChain);
  if (usesFWChain) chain(chainNames.firewall);
  if (usesClusterPolicyChain) chain(clusterPolicyChain);
  if (usesLocalPolicyChain) chain(localPolicyChain);

  if (hasInternalEndpoints) {
    const args = [...comment(`${name} cluster IP`), ...clusterIPMatch];
    // Off-cluster traffic to a ClusterIP (a static route to any node) may leave the node again.
    if (options.masqueradeAll) chain(internalTrafficChain).push(fmt([...args, '-j', KUBE_MARK_MASQ]));
    else if (detectorImplemented) chain(internalTrafficChain).push(fmt([...args, ...notLocalMatch, '-j', KUBE_MARK_MASQ]));
  }

  if (usesExternalTrafficChain) {
    const ext = chain(externalTrafficChain);
    if (!svc.externalPolicyLocal) {
      ext.push(fmt([...comment(`masquerade traffic for ${name} external destinations`), '-j', KUBE_MARK_MASQ]));
    } else {
      // Pod traffic to an external address acts as if it went out to the load balancer and
      // came back: no traffic policy applies.
      if (detectorImplemented) ext.push(fmt([...comment(`pod traffic for ${name} external destinations`), ...localMatch, '-j', clusterPolicyChain]));
      // The node's own traffic uses the external IP (a local address) as source: masquerade it.
      ext.push(fmt([...comment(`masquerade LOCAL traffic for ${name} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', KUBE_MARK_MASQ]));
      ext.push(fmt([...comment(`route LOCAL traffic for ${name} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', clusterPolicyChain]));
    }
    if (hasExternalEndpoints) ext.push(fmt(['-j', externalPolicyChain]));
  }

  if (usesFWChain) {
    const fw = chain(chainNames.firewall);
    const head = comment(`${name} loadbalancer IP`);
    let allowFromNode = false;
    for (const cidr of svc.loadBalancerSourceRanges) {
      fw.push(fmt([...head, '-s', cidr, '-j', externalTrafficChain]));
      if (options.nodeIP && ipFamilyOf(options.nodeIP) === state.ipFamily && cidrContains(cidr, options.nodeIP, state.ipFamily)) allowFromNode = true;
    }
    // A VIP-style LB address is often local: the node's own requests then come from the VIP.
    if (allowFromNode) for (const ip of svc.loadBalancerVIPs) fw.push(fmt([...head, '-s', ip, '-j', externalTrafficChain]));
    // What reaches the end was not DNATed, and KUBE-PROXY-FIREWALL drops it.
    fw.push(fmt(comment(`other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL`)));
  }

  const affinity = svc.sessionAffinity.type === 'ClientIP' ? svc.sessionAffinity.timeoutSeconds : undefined;
  const epChain = (ep: Endpoint) => cachedName(`${name}\u0000${svc.protocol}\u0000${ep.hostPort}`, () => endpointChainName(name, svc.protocol, ep.hostPort));
  const writeEndpointJumps = (target: string[], eps: readonly Endpoint[]) => {
    if (affinity !== undefined) {
      for (const ep of eps) {
        const sep = epChain(ep);
        target.push(fmt([...maybeComment(`${name} -> ${ep.hostPort}`), '-m', 'recent', '--name', sep, '--rcheck', '--seconds', String(affinity), '--reap', '-j', sep]));
      }
    }
    eps.forEach((ep, i) => {
      const statistic = i < eps.length - 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', probability(eps.length - i)] : [];
      target.push(fmt([...maybeComment(`${name} -> ${ep.hostPort}`), ...statistic, '-j', epChain(ep)]));
    });
  };
  if (usesClusterPolicyChain) writeEndpointJumps(chain(clusterPolicyChain), clusterEndpoints);
  if (usesLocalPolicyChain) writeEndpointJumps(chain(localPolicyChain), localEndpoints);

  for (const ep of allReachableEndpoints) {
    const sep = chain(epChain(ep));
    const head = maybeComment(name);
    // Hairpin: an endpoint reaching itself through the service must see the node as source.
    sep.push(fmt([...head, '-s', ep.ip, '-j', KUBE_MARK_MASQ]));
    const recent = affinity !== undefined ? ['-m', 'recent', '--name', epChain(ep), '--set'] : [];
    sep.push(fmt([...head, ...recent, ...proto, '-j', 'DNAT', '--to-destination', ep.hostPort]));
  }

  // Held until the service changes: lists at their length (one grown by push keeps room for 16).
  return new RetainableServicePortRules(
    exact(natServices),
    exact(natNodePorts),
    exact(filterServices),
    exact(filterExternalServices),
    exact(filterNodePorts),
    exact(filterFirewall),
    new Map([...chains].map(([n, rules]) => [n, joinRuleLines(n, rules)])),
    noLocalEndpointsInternal,
    noLocalEndpointsExternal,
    svc,
    endpoints,
    context,
  );
}

/** The whole rule set as one iptables-restore payload (filter, then nat), as upstream writes a full sync. */
export function renderFullPayload(rules: RuleSet): string {
  const out: string[] = ['*filter'];
  for (const chainName of rules.filter.keys()) out.push(`:${chainName} - [0:0]`);
  for (const [chainName, lines] of rules.filter) for (const line of lines) out.push(`-A ${chainName} ${line}`);
  out.push('COMMIT', '*nat');
  for (const chainName of rules.nat.keys()) out.push(`:${chainName} - [0:0]`);
  for (const svc of rules.services.values()) for (const chainName of svc.chainNames) out.push(`:${chainName} - [0:0]`);
  for (const svc of rules.services.values()) for (const [chainName, lines] of svc.chains) for (const line of ruleLines(lines)) out.push(`-A ${chainName} ${line}`);
  for (const [chainName, lines] of rules.nat) for (const line of lines) out.push(`-A ${chainName} ${line}`);
  out.push('COMMIT');
  return `${out.join('\n')}\n`;
}
