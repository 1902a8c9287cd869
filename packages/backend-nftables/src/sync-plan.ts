// The planning of an nftables sync, without I/O: from the state, the changes and what this
// process has written (HeldState), the transactions to run and the bookkeeping they lead to.
// Service objects are recomputed only where something changed, elements are counted per user,
// and a large sync is cut into bounded transactions (chains first, each after the endpoint-map
// elements it DNATs to, then the map elements that point at the chains).

import type { ChangeSet, IPFamily, ProxyConfig, ProxyState, ServicePort, ServicePortKey } from '@kube-proxy-ts/core';
import { createLocalTrafficDetector, isNftServiceObjectName, nftablesLocalMatch, ruleLines } from '@kube-proxy-ts/netfilter';
import { EndpointMapsPlanner, endpointsMapDeclaration, rangeElements as elementsOf, type EndpointMapsNext, type EndpointMapsState } from './endpoint-maps.js';
import type { ExistingObjects } from './existing-objects.js';
import { AFFINITY_PREFIX, OBSOLETE_HELPER_CHAINS, SERVICE_CONTAINERS, TABLE, nftFamily } from './layout.js';
import { computeServiceObjects, type ElementValue, type RuleContext, type ServiceObjects } from './service-objects.js';
import { containerDeclaration, masqueradeRule, obsoleteObjects, writeClusterIPsCheck, writeNodePortIPs, writeSetup, type SetupOptions } from './setup.js';
import { NftTransaction } from './transaction.js';

/** An element in the kernel, and how many service ports want it (a ClusterIP, an endpoint pair). */
export interface HeldElement {
  readonly value: ElementValue;
  readonly refs: number;
}
/** Container name -> element key -> element. */
export type Elements = Map<string, Map<string, HeldElement>>;
/** What a sync changes in Elements: a new entry, or null for an element deleted. */
export type ElementPatch = Map<string, Map<string, HeldElement | null>>;

/** What this process has written and the kernel accepted: the input a plan starts from. */
export interface HeldState {
  readonly services: ReadonlyMap<ServicePortKey, ServiceObjects>;
  readonly elements: Elements;
  /** Unused elements of lazy containers still in the kernel (see ContainerSpec.lazyDeletion). */
  readonly staleElements: ReadonlyMap<string, ReadonlySet<string>>;
  readonly affinitySets: ReadonlyMap<string, number>;
  readonly endpointMaps: EndpointMapsState;
  readonly setup: SetupOptions | undefined;
  /** Flushed chains waiting to be deleted, with the time they were flushed. */
  readonly staleChains: ReadonlyMap<string, number>;
  /** What the kernel holds is not known for sure: everything is rewritten. */
  readonly needFullSync: boolean;
  readonly baseChainsRecreated: boolean;
  readonly now: number;
}

/** The backend's fixed settings that shape a plan. */
export interface NftablesPlanLimits {
  readonly ipFamily: IPFamily;
  readonly config: ProxyConfig;
  readonly servicesPerTransaction: number;
  readonly linesPerTransaction: number;
  readonly staleDelayMs: number;
}

export interface NftablesPlanInput {
  readonly state: ProxyState;
  readonly changes: ChangeSet;
  /** null: NodePorts on every local address. */
  readonly nodePortIPs: readonly string[] | null;
  /** Names the table holds, when they were read (a new process, or after a failure). */
  readonly existing?: ExistingObjects;
}

/** What one sync would send to nft, and the bookkeeping it leads to once applied. */
export interface NftablesSyncPlan {
  readonly full: boolean;
  /** In order; each is one `nft -f -` run. */
  readonly transactions: readonly NftTransaction[];
  readonly next: {
    /** Full syncs replace the bookkeeping; the others patch it (null: gone), so their cost follows what changed. */
    readonly services: { readonly replace: Map<ServicePortKey, ServiceObjects> } | { readonly patch: Map<ServicePortKey, ServiceObjects | null> };
    readonly elements: { readonly replace: Elements } | { readonly patch: ElementPatch };
    /** Elements left in lazy containers, unused, for a later deletion. */
    readonly staleElements: Map<string, Set<string>>;
    readonly affinitySets: Map<string, number>;
    /** A full sync renumbers every endpoint into new maps and retires the old maps whole (deleted later). */
    readonly endpointMaps: EndpointMapsNext;
    readonly newlyStale: readonly string[];
    readonly reactivated: readonly string[];
    /** Stale chains flushed long enough ago, deleted by this sync. */
    readonly deleted: readonly string[];
    readonly setup: SetupOptions | undefined;
  };
  readonly stats: { recomputedAll: number; services: number; servicesWritten: number; chainsWritten: number; elementChanges: number; staleChains: number };
}

/** The transactions a sync runs, and the bookkeeping once they are applied. */
export function planSync(input: NftablesPlanInput, held: HeldState, limits: NftablesPlanLimits): NftablesSyncPlan {
  const { state, changes, nodePortIPs, existing } = input;
  const family = nftFamily(limits.ipFamily);
  // full: what the kernel holds is not known for sure, so everything is rewritten. A node change
  // only needs everything recomputed (topology, node IPs): what did not change is not rewritten.
  const full = held.needFullSync || !held.setup;
  const recomputeAll = full || changes.nodeChanged;
  const ruleCtx: RuleContext = {
    family: family,
    localDetector: createLocalTrafficDetector(limits.config, limits.ipFamily, state.node),
    nodeIP: state.node.addresses[0],
    masqueradeRule: masqueradeRule(limits.config.nftables.masqueradeBit),
    endpointSlots: (chain, protocol, targets) => slots.place(chain, protocol, targets),
  };
  const slots = new EndpointMapsPlanner(held.endpointMaps, full, existing?.maps);

  // 1. Objects of every service port; recomputed only where something changed. A partial sync
  // looks only at the changed keys (deleted ones included): its cost follows the changes.
  const all = recomputeAll ? new Map<ServicePortKey, ServiceObjects>() : undefined;
  const patched = new Map<ServicePortKey, ServiceObjects | null>();
  const nextOf = (key: ServicePortKey): ServiceObjects | undefined =>
    all ? all.get(key) : patched.has(key) ? (patched.get(key) ?? undefined) : held.services.get(key);
  const recomputed: ServicePortKey[] = [];
  const compute = (key: ServicePortKey, svc: ServicePort) => computeServiceObjects(svc, state.endpoints.get(key) ?? [], state.node, ruleCtx);
  if (all) {
    for (const [key, svc] of state.services) {
      all.set(key, compute(key, svc));
      recomputed.push(key);
    }
  } else {
    for (const key of changes.servicePorts) {
      const svc = state.services.get(key);
      if (svc) {
        patched.set(key, compute(key, svc));
        recomputed.push(key);
      } else if (held.services.has(key)) patched.set(key, null);
    }
  }
  // Policy chains that no longer DNAT through a map: their ranges retire.
  for (const key of all ? held.services.keys() : patched.keys()) {
    for (const { chain } of held.services.get(key)?.slots ?? []) slots.release(chain);
  }
  /** Service ports held and gone from the state. */
  const removed = all ? [...held.services.keys()].filter((k) => !all.has(k)) : [...patched].filter(([, o]) => o === null).map(([k]) => k);
  const serviceCount = all ? all.size : held.services.size + recomputed.filter((k) => !held.services.has(k)).length - removed.length;

  // 2. Affinity sets: the ones that disappear, and the ones to (re)create.
  const nextSets = new Map<string, number>(all ? [] : held.affinitySets);
  if (all) for (const o of all.values()) for (const [name, timeout] of o.affinitySets) nextSets.set(name, timeout);
  else {
    for (const key of patched.keys()) for (const name of held.services.get(key)?.affinitySets.keys() ?? []) nextSets.delete(name);
    for (const o of patched.values()) for (const [name, timeout] of o?.affinitySets ?? []) nextSets.set(name, timeout);
  }
  const knownSets = new Map(held.affinitySets);
  if (existing) {
    for (const name of existing.sets) if (name.startsWith(AFFINITY_PREFIX) && !knownSets.has(name)) knownSets.set(name, existing.setTimeouts.get(name) ?? -1);
  }
  const setsToDelete = [...knownSets.keys()].filter((name) => !nextSets.has(name));
  /** Sets whose timeout changed: deleted and re-added, after their service's chains are flushed. */
  const setsToRecreate = new Set([...nextSets].filter(([name, t]) => knownSets.has(name) && knownSets.get(name) !== t).map(([n]) => n));

  // 3. Stale chains: those of changed or deleted services that are no longer wanted.
  const active = new Set<string>();
  const candidates = new Set<string>();
  if (recomputeAll) {
    for (const o of all!.values()) for (const { name } of o.chains) active.add(name);
    for (const o of held.services.values()) for (const { name } of o.chains) candidates.add(name);
    if (existing) for (const name of existing.chains) if (isNftServiceObjectName(name) || OBSOLETE_HELPER_CHAINS.includes(name)) candidates.add(name);
  } else {
    for (const key of changes.servicePorts) {
      for (const { name } of held.services.get(key)?.chains ?? []) candidates.add(name);
      for (const { name } of nextOf(key)?.chains ?? []) active.add(name);
    }
  }
  const newlyStale = [...candidates].filter((name) => !active.has(name) && !held.staleChains.has(name));
  const reactivated = [...held.staleChains.keys()].filter((name) => active.has(name));
  const now = held.now;
  const dueStale = [...held.staleChains]
    .filter(([name, at]) => now - at >= limits.staleDelayMs && !active.has(name))
    .map(([name]) => name);

  // 4. The fixed part when everything is recomputed; otherwise only what of it follows the
  // state, when it moved: cluster-ips-check (the Service CIDRs) and nodeport-ips (the node's
  // addresses, read at every sync as upstream does). Then the chains of recomputed services,
  // in bounded transactions.
  const transactions: NftTransaction[] = [];
  const newTx = () => new NftTransaction(family, TABLE);
  const serviceCIDRs = state.serviceCIDRs ?? [];
  const cidrsMoved = held.setup !== undefined && !sameList(held.setup.serviceCIDRs, serviceCIDRs);
  const nodePortIPsMoved = held.setup !== undefined && !sameList(held.setup.nodePortIPs, nodePortIPs);
  const setup: SetupOptions | undefined = recomputeAll
    ? {
        ipFamily: limits.ipFamily,
        masqueradeBit: limits.config.nftables.masqueradeBit,
        masqueradeAll: limits.config.nftables.masqueradeAll,
        ifNotLocal: nftablesLocalMatch(ruleCtx.localDetector, true),
        nodePortIPs,
        serviceCIDRs,
        recreateBaseChains: !held.baseChainsRecreated,
        ...(existing ? { obsolete: obsoleteObjects(existing) } : {}),
      }
    : held.setup && (cidrsMoved || nodePortIPsMoved)
      ? { ...held.setup, serviceCIDRs, nodePortIPs }
      : undefined;
  let tx = newTx();
  if (recomputeAll && setup) {
    writeSetup(tx, setup);
    transactions.push(tx);
    tx = newTx();
  } else if (setup) {
    if (cidrsMoved) writeClusterIPsCheck(tx, setup);
    if (nodePortIPsMoved) writeNodePortIPs(tx, setup);
  }
  // A set re-created below (its timeout changed, or a table of an earlier process did not say it)
  // may still be referenced by a chain its service port no longer uses: those stale chains are
  // flushed in the service port's own transaction, before the set is deleted, not at the end.
  const staleByServicePort = new Map<string, string[]>();
  for (const name of newlyStale) {
    const owner = servicePortOfChain(name);
    if (owner !== undefined) staleByServicePort.set(owner, [...(staleByServicePort.get(owner) ?? []), name]);
  }
  const flushedEarly = new Set<string>();
  let servicesInTx = 0;
  let rangeElements = 0;
  let chainsWritten = 0;
  let servicesWritten = 0;
  for (const key of recomputed) {
    const objects = nextOf(key)!;
    const prev = full ? undefined : held.services.get(key);
    const recreate = [...objects.affinitySets.keys()].filter((n) => setsToRecreate.has(n));
    const chains = objects.chains.filter(
      ({ name, rules }) => !prev || recreate.length > 0 || held.staleChains.has(name) || prev.chains.find((c) => c.name === name)?.rules !== rules,
    );
    const newSets = [...objects.affinitySets].filter(([name]) => full || !knownSets.has(name) || setsToRecreate.has(name));
    const newRanges = objects.slots.filter((r) => slots.isNew(r));
    if (chains.length === 0 && newSets.length === 0 && newRanges.length === 0) continue;
    servicesWritten++;
    chainsWritten += chains.length;
    const part = newTx();
    for (const { name } of chains) part.addChain(name).flushChain(name);
    if (recreate.length > 0) {
      for (const name of staleByServicePort.get(servicePortOfChain(objects.chains[0]?.name ?? '') ?? '') ?? []) {
        part.flushChain(name);
        flushedEarly.add(name);
      }
    }
    for (const name of recreate) part.deleteContainer('set', name);
    for (const [name, timeout] of newSets) {
      part.addContainer('set', name, family === 'ip6' ? 'ipv6_addr' : 'ipv4_addr', { flags: 'dynamic,timeout', timeoutSeconds: timeout });
    }
    // A range's elements go before the rule that DNATs to them, in the same transaction.
    for (const r of newRanges) part.addElements(r.map, elementsOf(r), endpointsMapDeclaration(family, r.protocol));
    for (const r of newRanges) rangeElements += r.size;
    for (const { name, rules } of chains) part.addChainRules(name, ruleLines(rules));
    if (tx.size > 0 && (servicesInTx >= limits.servicesPerTransaction || tx.size + part.size > limits.linesPerTransaction)) {
      transactions.push(tx);
      tx = newTx();
      servicesInTx = 0;
    }
    tx.append(part);
    tx.services++;
    servicesInTx++;
  }

  // 5. Map and set elements. Full: flushed and re-added. Otherwise only the elements of the
  // recomputed service ports are looked at: counted in and out, and written where the kernel's
  // element has to appear, go or change value.
  const final = newTx();
  let elementChanges = rangeElements;
  let nextElements: NftablesSyncPlan['next']['elements'];
  const lazyDeletions: [string, string][] = [];
  if (full) {
    const store: Elements = new Map();
    for (const o of all!.values()) countElements(store, o, 1);
    for (const c of SERVICE_CONTAINERS) {
      const want = [...(store.get(c.name) ?? [])].map(([k, e]) => [k, e.value] as const);
      final.flushContainer(c.kind, c.name);
      final.addElements(c.name, want, containerDeclaration(c, limits.ipFamily));
      elementChanges += want.length;
    }
    nextElements = { replace: store };
  } else {
    const counted: Elements = new Map();
    for (const key of new Set([...recomputed, ...removed])) {
      const before = held.services.get(key);
      const after = nextOf(key);
      if (before === after) continue;
      if (before) countElements(counted, before, -1, held.elements);
      if (after) countElements(counted, after, 1, held.elements);
    }
    const patch: ElementPatch = new Map();
    for (const c of SERVICE_CONTAINERS) {
      const toDelete: string[] = [];
      const toAdd: [string, ElementValue][] = [];
      const changed = new Map<string, HeldElement | null>();
      for (const [k, e] of counted.get(c.name) ?? []) {
        const inKernel = held.elements.get(c.name)?.get(k);
        if (inKernel && e.refs === inKernel.refs && sameElement(inKernel.value, e.value)) continue;
        const differs = inKernel !== undefined && !sameElement(inKernel.value, e.value);
        // An unused element of a lazy container stays (counted 0) until a deletion that costs nothing extra.
        const lazy = c.lazyDeletion && e.refs <= 0 && inKernel !== undefined;
        changed.set(k, e.refs > 0 || lazy ? { value: e.value, refs: Math.max(0, e.refs) } : null);
        if (lazy) lazyDeletions.push([c.name, k]);
        else if (inKernel && (e.refs <= 0 || differs)) toDelete.push(k);
        if (e.refs > 0 && (!inKernel || differs)) toAdd.push([k, e.value]);
      }
      if (changed.size > 0) patch.set(c.name, changed);
      final.deleteElements(c.name, toDelete).addElements(c.name, toAdd, containerDeclaration(c, limits.ipFamily));
      elementChanges += toDelete.length + toAdd.length;
    }
    nextElements = { patch };
  }

  // 6. Stale chains are flushed now (deleted later); unused affinity sets go at once.
  const tail: NftTransaction[] = [];
  let flushTx = final;
  for (const name of newlyStale) {
    if (flushedEarly.has(name)) continue;
    if (flushTx.size >= limits.linesPerTransaction) tail.push((flushTx = newTx()));
    flushTx.flushChain(name);
  }
  if (setsToDelete.length > 0) {
    if (flushTx.size + setsToDelete.length > limits.linesPerTransaction) tail.push((flushTx = newTx()));
    for (const name of setsToDelete) flushTx.deleteContainer('set', name);
  }
  // Chains flushed by an earlier sync go with this one when it makes nft read the chains
  // anyway; otherwise the stale-chain timer deletes them, off the sync's path.
  const listsChains = full || tx.needsChainCache || final.needsChainCache || tail.some((t) => t.needsChainCache) || flushTx.needsChainCache;
  const deleteNow = listsChains ? dueStale : [];
  for (const name of deleteNow) {
    if (flushTx.size >= limits.linesPerTransaction) tail.push((flushTx = newTx()));
    flushTx.deleteChain(name);
  }
  // Unused elements of lazy containers: the same, with no delay to wait for.
  const staleElements = new Map<string, Set<string>>();
  if (!full) {
    const patch = 'patch' in nextElements ? nextElements.patch : new Map<string, Map<string, HeldElement | null>>();
    for (const [container, keys] of held.staleElements) {
      const wanted = patch.get(container);
      staleElements.set(container, new Set([...keys].filter((k) => !wanted?.get(k)?.refs)));
    }
    for (const [container, k] of lazyDeletions) {
      if (!staleElements.has(container)) staleElements.set(container, new Set());
      staleElements.get(container)!.add(k);
    }
    if (listsChains) {
      for (const [container, keys] of staleElements) {
        if (keys.size === 0) continue;
        if (flushTx.size >= limits.linesPerTransaction) tail.push((flushTx = newTx()));
        flushTx.deleteElements(container, [...keys]);
        let changed = patch.get(container);
        if (!changed) patch.set(container, (changed = new Map()));
        for (const k of keys) changed.set(k, null);
        keys.clear();
      }
    }
  }
  // Retired endpoint-map ranges: the same (nothing DNATs to them; their numbers are reused once deleted).
  if (listsChains && !full) {
    for (const [map, keys] of slots.deleteRetired()) {
      if (flushTx.size >= limits.linesPerTransaction) tail.push((flushTx = newTx()));
      flushTx.deleteElements(map, keys);
    }
  }
  // A small sync is one atomic transaction.
  if (tx.size + final.size <= limits.linesPerTransaction) {
    tx.append(final);
    if (tx.size > 0) transactions.push(tx);
  } else {
    if (tx.size > 0) transactions.push(tx);
    if (final.size > 0) transactions.push(final);
  }
  transactions.push(...tail.filter((t) => t.size > 0));

  return {
    full,
    transactions,
    next: { services: all ? { replace: all } : { patch: patched }, elements: nextElements, staleElements, affinitySets: nextSets, endpointMaps: slots.next(), newlyStale, reactivated, deleted: deleteNow, setup: setup ?? held.setup },
    stats: { recomputedAll: recomputeAll ? 1 : 0, services: serviceCount, servicesWritten, chainsWritten, elementChanges, staleChains: newlyStale.length },
  };
}

/**
 * Adds (sign 1) or removes (-1) the elements of one service port to `into`, whose entries
 * start from `base` (what is held) when first touched. An element another service port also
 * wants keeps its count above zero.
 */
function countElements(into: Elements, objects: ServiceObjects, sign: 1 | -1, base?: Elements): void {
  for (const { container, key, value } of objects.elements) {
    let m = into.get(container);
    if (!m) into.set(container, (m = new Map()));
    const e = m.get(key) ?? base?.get(container)?.get(key) ?? { value, refs: 0 };
    m.set(key, { value: sign > 0 ? value : e.value, refs: e.refs + sign });
  }
}

function sameElement(a: ElementValue, b: ElementValue): boolean {
  return a.value === b.value && a.comment === b.comment;
}

/** `ns/name/proto/port` of a service port's chain (`service-HASH-ns/name/proto/port`, `endpoint-HASH-...__ip/port`). */
function servicePortOfChain(chain: string): string | undefined {
  return /^[a-z]+-[A-Z2-7]{8}-(.+?)(?:__.*)?$/.exec(chain)?.[1];
}

/** Equal address lists (null: every local address). */
export function sameList(a: readonly string[] | null, b: readonly string[] | null): boolean {
  return a === null || b === null ? a === b : a.length === b.length && a.every((x, i) => x === b[i]);
}

