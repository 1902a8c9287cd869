// The nftables backend: upstream's nftables proxier, with the layout of layout.ts. Every sync
// computes, per service port, the chains, affinity sets and map elements it needs
// (service-objects.ts) and writes only what differs from what this process last wrote, which it
// remembers: the table is never listed on the steady-state path, and a partial sync's cost
// follows what changed (elements are counted per user, not recomputed). Large syncs are cut into
// bounded transactions (chains first, then the map elements that point at them) so that no single
// netlink batch keeps the kernel busy long. Rules and element additions are written in the block
// forms of transaction.ts, so that the common sync does not make nft read every chain first;
// deletions still do, so stale chains and unused hairpin pairs are deleted with a sync that needs
// that anyway, or later by a timer. A new process reads only the names in the table.

import type {
  Backend,
  BackendContext,
  BackendOptions,
  ChangeSet,
  ExplainPacket,
  Explanation,
  IPFamily,
  KernelView,
  NodeInfo,
  ProxyConfig,
  ProxyState,
  ServicePort,
  ServicePortKey,
  SyncResult,
} from '@kube-proxy-ts/core';
import { counter, SyncProgress } from '@kube-proxy-ts/core';
import {
  createLocalTrafficDetector,
  deleteConntrackFlows,
  isNftServiceObjectName,
  currentNodePortIPs,
  planStaleUDPFlows,
  registerDriftSeries,
  resolveNodePortAddresses,
} from '@kube-proxy-ts/netfilter';
import { TableWatch } from './canary.js';
import { listExistingObjects, type ExistingObjects } from './existing-objects.js';
import { listTableForInspection, nftablesExplain, nftablesKernelView } from './kernel-view.js';
import { AFFINITY_PREFIX, NODEPORT_IPS_SET, SERVICE_CONTAINERS, TABLE, nftFamily, type NftFamily } from './layout.js';
import { computeServiceObjects, type ElementValue, type RuleContext, type ServiceObjects } from './service-objects.js';
import { baseChainRules, containerDeclaration, helperChainRules, obsoleteObjects, writeClusterIPsCheck, writeNodePortIPs, writeSetup, type SetupOptions } from './setup.js';
import { NftTransaction, renderElement } from './transaction.js';

export interface NftablesBackendOptions extends BackendOptions {
  /**
   * Service ports whose chains go into one nft transaction. Default 1000: each commit that adds
   * rules validates the whole table, so a restarted daemon rewriting a full table pays that once
   * per transaction (10k services: 11 transactions of about 0.3 s each at load 4).
   */
  readonly servicesPerTransaction?: number;
  /** A transaction is closed before it would exceed this many commands and rules. Default 50000. */
  readonly linesPerTransaction?: number;
  /** Every nft call is killed after this long. Default 60 s. */
  readonly nftTimeoutMs?: number;
  /** Stale chains are flushed at once and deleted this much later (kernels before 6.2 need it). Default 1000 ms. */
  readonly staleChainDelayMs?: number;
}

/** An element in the kernel, and how many service ports want it (a ClusterIP, an endpoint pair). */
interface HeldElement {
  readonly value: ElementValue;
  readonly refs: number;
}
/** Container name -> element key -> element. */
type Elements = Map<string, Map<string, HeldElement>>;
/** What a sync changes in Elements: a new entry, or null for an element deleted. */
type ElementPatch = Map<string, Map<string, HeldElement | null>>;

/** What one sync would send to nft, and the bookkeeping it leads to once applied. */
export interface SyncPlan {
  readonly full: boolean;
  /** In order; each is one `nft -f -` run. */
  readonly transactions: readonly NftTransaction[];
  readonly next: {
    readonly services: Map<ServicePortKey, ServiceObjects>;
    /** Full syncs replace the bookkeeping; the others patch it, so their cost follows what changed. */
    readonly elements: { readonly replace: Elements } | { readonly patch: ElementPatch };
    /** Elements left in lazy containers, unused, for a later deletion. */
    readonly staleElements: Map<string, Set<string>>;
    readonly affinitySets: Map<string, number>;
    readonly newlyStale: readonly string[];
    readonly reactivated: readonly string[];
    /** Stale chains flushed long enough ago, deleted by this sync. */
    readonly deleted: readonly string[];
    readonly setup: SetupOptions | undefined;
  };
  readonly stats: { recomputedAll: number; services: number; servicesWritten: number; chainsWritten: number; elementChanges: number; staleChains: number };
}

export class NftablesBackend implements Backend {
  readonly name = 'nftables';
  readonly ipFamily: IPFamily;
  private readonly family: NftFamily;
  private readonly config: ProxyConfig;
  private readonly servicesPerTransaction: number;
  private readonly linesPerTransaction: number;
  private readonly timeoutMs: number;
  private readonly staleDelayMs: number;
  private ctx: BackendContext | undefined;

  // What this process has written and the kernel accepted.
  private services = new Map<ServicePortKey, ServiceObjects>();
  private elements: Elements = new Map();
  /** Unused elements of lazy containers still in the kernel (see ContainerSpec.lazyDeletion). */
  private staleElements = new Map<string, Set<string>>();
  private affinitySets = new Map<string, number>();
  private setup: SetupOptions | undefined;
  /** Flushed chains waiting to be deleted, with the time they were flushed. */
  private readonly staleChains = new Map<string, number>();
  private needFullSync = true;
  /** The kernel may hold objects we do not know of (a new process, or a failed transaction). */
  private kernelUnknown = true;
  private baseChainsRecreated = false;
  private staleTimer: unknown;
  private readonly tableWatch: TableWatch;
  private queue: Promise<unknown> = Promise.resolve();
  /** Transactions of the last sync, as sent (for logs and tests); empty when they exceeded 1 MB. */
  lastTransactions: readonly string[] = [];

  constructor(options: NftablesBackendOptions) {
    this.ipFamily = options.ipFamily;
    this.family = nftFamily(options.ipFamily);
    this.config = options.config;
    this.servicesPerTransaction = options.servicesPerTransaction ?? 1000;
    this.linesPerTransaction = options.linesPerTransaction ?? 50_000;
    this.timeoutMs = options.nftTimeoutMs ?? 60_000;
    this.staleDelayMs = options.staleChainDelayMs ?? 1000;
    this.tableWatch = new TableWatch(options.ipFamily, options.config.nftables.syncPeriod, this.timeoutMs);
  }

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    this.metrics(); // register the series at start, as upstream does
    registerDriftSeries(ctx.metrics, this.ipFamily);
  }

  sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    return this.serialized(() => this.syncNow(state, changes));
  }

  async cleanup(): Promise<void> {
    await this.serialized(async () => {
      this.cancelStaleTimer();
      const ctx = this.requireCtx();
      const r = await ctx.runner.run('nft', ['delete', 'table', this.family, TABLE], { timeoutMs: this.timeoutMs });
      if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) {
        this.metrics().cleanupFailures.inc({ ip_family: this.ipFamily });
        throw new Error(`nft delete table ${this.family} ${TABLE}: ${r.stderr.trim() || `exit ${r.code}`}`);
      }
      this.forget();
    });
  }

  async stop(): Promise<void> {
    this.cancelStaleTimer();
    await this.queue.catch(() => undefined);
  }

  /** `kube-proxy inspect`: what the kernel's table holds for each service port, from one listing. */
  async kernelView(servicePorts: readonly ServicePort[]): Promise<KernelView> {
    if (!this.ctx) throw new Error('the nftables backend has not started');
    return nftablesKernelView(await listTableForInspection(this.ctx.runner, this.ipFamily, this.timeoutMs), servicePorts, this.ipFamily);
  }

  /** `kube-proxy explain`: `packet` walked through the table the kernel holds. */
  async explain(packet: ExplainPacket, node: NodeInfo): Promise<Explanation> {
    if (!this.ctx) throw new Error('the nftables backend has not started');
    return nftablesExplain(await listTableForInspection(this.ctx.runner, this.ipFamily, this.timeoutMs), packet, node.addresses, this.ipFamily);
  }

  /** The table as this backend programmed it: chains with rules, sets and maps with elements. */
  async inspect(): Promise<unknown> {
    await this.queue.catch(() => undefined);
    if (!this.setup) return { family: this.family, table: null };
    const chains: Record<string, string[]> = {};
    for (const [name, rules] of baseChainRules()) chains[name] = rules;
    for (const [name, rules] of helperChainRules(this.setup)) chains[name] = rules;
    for (const objects of this.services.values()) for (const [name, rules] of objects.chains) chains[name] = [...rules];
    const containers: Record<string, string[]> = {};
    for (const c of SERVICE_CONTAINERS) {
      const els = this.elements.get(c.name) ?? new Map<string, HeldElement>();
      containers[`${c.kind} ${c.name}`] = [...els].filter(([, e]) => e.refs > 0).map(([k, e]) => renderElement(k, e.value)).sort();
    }
    if (this.setup.nodePortIPs) containers[`set ${NODEPORT_IPS_SET}`] = [...this.setup.nodePortIPs].sort();
    for (const [name, timeout] of this.affinitySets) containers[`set ${name}`] = [`timeout ${timeout}s`];
    return { family: this.family, table: TABLE, chains, containers };
  }

  /**
   * The transactions a sync of `state` would run now, without running them (dry run).
   * Node-port addresses are taken as given (null: every local address).
   */
  plan(state: ProxyState, changes: ChangeSet, nodePortIPs: readonly string[] | null = null, existing?: ExistingObjects): SyncPlan {
    // full: what the kernel holds is not known for sure, so everything is rewritten. A node change
    // only needs everything recomputed (topology, node IPs): what did not change is not rewritten.
    const full = this.needFullSync || !this.setup;
    const recomputeAll = full || changes.nodeChanged;
    const ruleCtx: RuleContext = {
      family: this.family,
      masqueradeAll: this.config.nftables.masqueradeAll,
      localDetector: createLocalTrafficDetector(this.config, this.ipFamily, state.node),
      nodeIP: state.node.addresses[0],
    };

    // 1. Objects of every service port; recomputed only where something changed.
    const next = new Map<ServicePortKey, ServiceObjects>();
    const recomputed: ServicePortKey[] = [];
    for (const [key, svc] of state.services) {
      const prev = this.services.get(key);
      if (recomputeAll || !prev || changes.servicePorts.has(key)) {
        next.set(key, computeServiceObjects(svc, state.endpoints.get(key) ?? [], state.node, ruleCtx));
        recomputed.push(key);
      } else {
        next.set(key, prev);
      }
    }

    // 2. Affinity sets: the ones that disappear, and the ones to (re)create.
    const nextSets = new Map<string, number>();
    for (const o of next.values()) for (const [name, timeout] of o.affinitySets) nextSets.set(name, timeout);
    const knownSets = new Map(this.affinitySets);
    if (existing) for (const name of existing.sets) if (name.startsWith(AFFINITY_PREFIX) && !knownSets.has(name)) knownSets.set(name, -1);
    const setsToDelete = [...knownSets.keys()].filter((name) => !nextSets.has(name));
    /** Sets whose timeout changed: deleted and re-added, after their service's chains are flushed. */
    const setsToRecreate = new Set([...nextSets].filter(([name, t]) => knownSets.has(name) && knownSets.get(name) !== t).map(([n]) => n));

    // 3. Stale chains: those of changed or deleted services that are no longer wanted.
    const active = new Set<string>();
    const candidates = new Set<string>();
    if (recomputeAll) {
      for (const o of next.values()) for (const name of o.chains.keys()) active.add(name);
      for (const o of this.services.values()) for (const name of o.chains.keys()) candidates.add(name);
      if (existing) for (const name of existing.chains) if (isNftServiceObjectName(name)) candidates.add(name);
    } else {
      const touched = new Set([...changes.servicePorts, ...[...this.services.keys()].filter((k) => !state.services.has(k))]);
      for (const key of touched) {
        for (const name of this.services.get(key)?.chains.keys() ?? []) candidates.add(name);
        for (const name of next.get(key)?.chains.keys() ?? []) active.add(name);
      }
    }
    const newlyStale = [...candidates].filter((name) => !active.has(name) && !this.staleChains.has(name));
    const reactivated = [...this.staleChains.keys()].filter((name) => active.has(name));
    const now = this.ctx?.clock.now() ?? 0;
    const dueStale = [...this.staleChains]
      .filter(([name, at]) => now - at >= this.staleDelayMs && !active.has(name))
      .map(([name]) => name);

    // 4. The fixed part when everything is recomputed; otherwise only what of it follows the
    // state, when it moved: cluster-ips-check (the Service CIDRs) and nodeport-ips (the node's
    // addresses, read at every sync as upstream does). Then the chains of recomputed services,
    // in bounded transactions.
    const transactions: NftTransaction[] = [];
    const newTx = () => new NftTransaction(this.family, TABLE);
    const serviceCIDRs = state.serviceCIDRs ?? [];
    const cidrsMoved = this.setup !== undefined && !sameList(this.setup.serviceCIDRs, serviceCIDRs);
    const nodePortIPsMoved = this.setup !== undefined && !sameList(this.setup.nodePortIPs, nodePortIPs);
    const setup: SetupOptions | undefined = recomputeAll
      ? {
          ipFamily: this.ipFamily,
          masqueradeBit: this.config.nftables.masqueradeBit,
          nodePortIPs,
          serviceCIDRs,
          recreateBaseChains: !this.baseChainsRecreated,
          ...(existing ? { obsolete: obsoleteObjects(existing) } : {}),
        }
      : this.setup && (cidrsMoved || nodePortIPsMoved)
        ? { ...this.setup, serviceCIDRs, nodePortIPs }
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
    let servicesInTx = 0;
    let chainsWritten = 0;
    let servicesWritten = 0;
    for (const key of recomputed) {
      const objects = next.get(key)!;
      const prev = full ? undefined : this.services.get(key);
      const recreate = [...objects.affinitySets.keys()].filter((n) => setsToRecreate.has(n));
      const chains = [...objects.chains].filter(
        ([name, rules]) => !prev || recreate.length > 0 || this.staleChains.has(name) || !sameRules(prev.chains.get(name), rules),
      );
      const newSets = [...objects.affinitySets].filter(([name]) => full || !knownSets.has(name) || setsToRecreate.has(name));
      if (chains.length === 0 && newSets.length === 0) continue;
      servicesWritten++;
      chainsWritten += chains.length;
      const part = newTx();
      for (const [name] of chains) part.addChain(name).flushChain(name);
      for (const name of recreate) part.deleteContainer('set', name);
      for (const [name, timeout] of newSets) {
        part.addContainer('set', name, this.family === 'ip6' ? 'ipv6_addr' : 'ipv4_addr', { flags: 'dynamic,timeout', timeoutSeconds: timeout });
      }
      for (const [name, rules] of chains) part.addChainRules(name, rules);
      if (tx.size > 0 && (servicesInTx >= this.servicesPerTransaction || tx.size + part.size > this.linesPerTransaction)) {
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
    let elementChanges = 0;
    let nextElements: SyncPlan['next']['elements'];
    const lazyDeletions: [string, string][] = [];
    if (full) {
      const store: Elements = new Map();
      for (const o of next.values()) countElements(store, o, 1);
      for (const c of SERVICE_CONTAINERS) {
        const want = [...(store.get(c.name) ?? [])].map(([k, e]) => [k, e.value] as const);
        final.flushContainer(c.kind, c.name);
        final.addElements(c.name, want, containerDeclaration(c, this.ipFamily));
        elementChanges += want.length;
      }
      nextElements = { replace: store };
    } else {
      const counted: Elements = new Map();
      for (const key of new Set([...recomputed, ...[...this.services.keys()].filter((k) => !state.services.has(k))])) {
        const before = this.services.get(key);
        const after = next.get(key);
        if (before === after) continue;
        if (before) countElements(counted, before, -1, this.elements);
        if (after) countElements(counted, after, 1, this.elements);
      }
      const patch: ElementPatch = new Map();
      for (const c of SERVICE_CONTAINERS) {
        const toDelete: string[] = [];
        const toAdd: [string, ElementValue][] = [];
        const changed = new Map<string, HeldElement | null>();
        for (const [k, e] of counted.get(c.name) ?? []) {
          const held = this.elements.get(c.name)?.get(k);
          if (held && e.refs === held.refs && sameElement(held.value, e.value)) continue;
          const differs = held !== undefined && !sameElement(held.value, e.value);
          // An unused element of a lazy container stays (counted 0) until a deletion that costs nothing extra.
          const lazy = c.lazyDeletion && e.refs <= 0 && held !== undefined;
          changed.set(k, e.refs > 0 || lazy ? { value: e.value, refs: Math.max(0, e.refs) } : null);
          if (lazy) lazyDeletions.push([c.name, k]);
          else if (held && (e.refs <= 0 || differs)) toDelete.push(k);
          if (e.refs > 0 && (!held || differs)) toAdd.push([k, e.value]);
        }
        if (changed.size > 0) patch.set(c.name, changed);
        final.deleteElements(c.name, toDelete).addElements(c.name, toAdd, containerDeclaration(c, this.ipFamily));
        elementChanges += toDelete.length + toAdd.length;
      }
      nextElements = { patch };
    }

    // 6. Stale chains are flushed now (deleted later); unused affinity sets go at once.
    const tail: NftTransaction[] = [];
    let flushTx = final;
    for (const name of newlyStale) {
      if (flushTx.size >= this.linesPerTransaction) tail.push((flushTx = newTx()));
      flushTx.flushChain(name);
    }
    if (setsToDelete.length > 0) {
      if (flushTx.size + setsToDelete.length > this.linesPerTransaction) tail.push((flushTx = newTx()));
      for (const name of setsToDelete) flushTx.deleteContainer('set', name);
    }
    // Chains flushed by an earlier sync go with this one when it makes nft read the chains
    // anyway; otherwise the stale-chain timer deletes them, off the sync's path.
    const listsChains = full || tx.needsChainCache || final.needsChainCache || tail.some((t) => t.needsChainCache) || flushTx.needsChainCache;
    const deleteNow = listsChains ? dueStale : [];
    for (const name of deleteNow) {
      if (flushTx.size >= this.linesPerTransaction) tail.push((flushTx = newTx()));
      flushTx.deleteChain(name);
    }
    // Unused elements of lazy containers: the same, with no delay to wait for.
    const staleElements = new Map<string, Set<string>>();
    if (!full) {
      const patch = 'patch' in nextElements ? nextElements.patch : new Map<string, Map<string, HeldElement | null>>();
      for (const [container, keys] of this.staleElements) {
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
          if (flushTx.size >= this.linesPerTransaction) tail.push((flushTx = newTx()));
          flushTx.deleteElements(container, [...keys]);
          let changed = patch.get(container);
          if (!changed) patch.set(container, (changed = new Map()));
          for (const k of keys) changed.set(k, null);
          keys.clear();
        }
      }
    }
    // A small sync is one atomic transaction.
    if (tx.size + final.size <= this.linesPerTransaction) {
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
      next: { services: next, elements: nextElements, staleElements, affinitySets: nextSets, newlyStale, reactivated, deleted: deleteNow, setup: setup ?? this.setup },
      stats: { recomputedAll: recomputeAll ? 1 : 0, services: next.size, servicesWritten, chainsWritten, elementChanges, staleChains: newlyStale.length },
    };
  }

  private async syncNow(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    const ctx = this.ctx;
    if (!ctx) return { ok: false, full: true, error: new Error('nftables backend: sync before start') };
    const m = this.metrics();
    // Someone deleted or flushed the table: nothing we remember having written is there.
    if (await this.tableWatch.lost(ctx, this.needFullSync || !this.setup)) this.forget();
    const full = this.needFullSync || changes.nodeChanged || !this.setup;
    try {
      const existing = this.kernelUnknown && (this.needFullSync || !this.setup) ? await listExistingObjects(ctx.runner, this.family, TABLE, this.timeoutMs) : undefined;
      const nodePortIPs = await this.nodePortIPs(state);
      const plan = this.plan(state, changes, nodePortIPs, existing);
      const texts = plan.transactions.map((t) => t.toString());
      this.lastTransactions = texts.reduce((n, t) => n + t.length, 0) <= 1 << 20 ? texts : [];
      const progress = new SyncProgress(ctx.logger, ctx.clock, plan.stats.servicesWritten);
      let written = 0;
      for (const [i, text] of texts.entries()) {
        const r = await ctx.runner.run('nft', ['-f', '-'], { stdin: text, timeoutMs: this.timeoutMs });
        if (r.code !== 0) {
          throw new Error(`nft transaction ${i + 1}/${texts.length} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(0, 5).join(' | ')}`);
        }
        progress.written((written += plan.transactions[i]!.services));
      }
      this.commit(plan);
      await deleteConntrackFlows(ctx.runner, this.ipFamily, planStaleUDPFlows(state, changes), ctx.logger);
      const lines = texts.reduce((n, t) => n + countLines(t), 0);
      return { ok: true, full: plan.full || changes.nodeChanged, stats: { ...plan.stats, transactions: texts.length, lines } };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      m.syncFailures.inc({ ip_family: this.ipFamily });
      ctx.logger.error({ err: error.message, ipFamily: this.ipFamily }, 'nftables sync failed');
      // Part of the transactions may have been applied: find out from the kernel next time.
      this.needFullSync = true;
      this.kernelUnknown = true;
      return { ok: false, full, error };
    }
  }

  private commit(plan: SyncPlan): void {
    const now = this.requireCtx().clock.now();
    this.services = plan.next.services;
    const els = plan.next.elements;
    this.staleElements = plan.next.staleElements;
    if ('replace' in els) this.elements = els.replace;
    else {
      for (const [container, changed] of els.patch) {
        let held = this.elements.get(container);
        if (!held) this.elements.set(container, (held = new Map()));
        for (const [k, e] of changed) {
          if (e) held.set(k, e);
          else held.delete(k);
        }
      }
    }
    this.affinitySets = plan.next.affinitySets;
    this.setup = plan.next.setup;
    for (const name of plan.next.reactivated) this.staleChains.delete(name);
    for (const name of plan.next.deleted) this.staleChains.delete(name);
    for (const name of plan.next.newlyStale) this.staleChains.set(name, now);
    if (plan.full) {
      this.needFullSync = false;
      this.kernelUnknown = false;
      this.baseChainsRecreated = true;
    }
    if (this.staleChains.size > 0 || this.hasStaleElements()) this.scheduleStaleDeletion();
  }

  private hasStaleElements(): boolean {
    return [...this.staleElements.values()].some((keys) => keys.size > 0);
  }

  /** Deletes the stale chains flushed at least staleChainDelayMs ago, in bounded transactions. */
  private async deleteStaleChains(): Promise<void> {
    const ctx = this.requireCtx();
    await this.deleteStaleElements();
    if (this.staleChains.size === 0) return;
    const due = [...this.staleChains].filter(([, at]) => ctx.clock.now() - at >= this.staleDelayMs).map(([name]) => name);
    for (let i = 0; i < due.length; i += this.linesPerTransaction) {
      const batch = due.slice(i, i + this.linesPerTransaction);
      const tx = new NftTransaction(this.family, TABLE);
      for (const name of batch) tx.deleteChain(name);
      for (const name of batch) this.staleChains.delete(name);
      const r = await ctx.runner.run('nft', ['-f', '-'], { stdin: tx.toString(), timeoutMs: this.timeoutMs });
      if (r.code === 0) ctx.logger.debug({ chains: batch.length }, 'deleted stale nftables chains');
      if (r.code !== 0) {
        // Left in the kernel, they are found again (and deleted) by the next full sync.
        this.metrics().cleanupFailures.inc({ ip_family: this.ipFamily });
        ctx.logger.warn({ chains: batch.length, stderr: r.stderr.trim().slice(0, 500) }, 'deleting stale nftables chains failed');
        this.kernelUnknown = true;
      }
    }
  }

  /** Deletes the unused elements of lazy containers, in one transaction. */
  private async deleteStaleElements(): Promise<void> {
    if (!this.hasStaleElements()) return;
    const ctx = this.requireCtx();
    const tx = new NftTransaction(this.family, TABLE);
    for (const [container, keys] of this.staleElements) tx.deleteElements(container, [...keys]);
    const r = await ctx.runner.run('nft', ['-f', '-'], { stdin: tx.toString(), timeoutMs: this.timeoutMs });
    if (r.code !== 0) {
      // Left in the kernel, they go with the next full sync's flush.
      this.metrics().cleanupFailures.inc({ ip_family: this.ipFamily });
      ctx.logger.warn({ stderr: r.stderr.trim().slice(0, 500) }, 'deleting unused nftables elements failed');
      this.kernelUnknown = true;
    } else {
      for (const [container, keys] of this.staleElements) for (const k of keys) this.elements.get(container)?.delete(k);
    }
    this.staleElements = new Map();
  }

  private scheduleStaleDeletion(): void {
    if (this.staleTimer !== undefined) return;
    const ctx = this.requireCtx();
    this.staleTimer = ctx.clock.setTimeout(() => {
      this.staleTimer = undefined;
      void this.serialized(() => this.deleteStaleChains()).then(
        () => {
          if (this.staleChains.size > 0 || this.hasStaleElements()) this.scheduleStaleDeletion();
        },
        (err: unknown) => ctx.logger.warn({ err: String(err) }, 'stale chain deletion failed'),
      );
    }, this.staleDelayMs + 20);
  }

  private cancelStaleTimer(): void {
    if (this.staleTimer !== undefined) this.ctx?.clock.clearTimeout(this.staleTimer);
    this.staleTimer = undefined;
  }

  /**
   * null when NodePorts are open on every local address; else the local addresses selected.
   * Unset nodePortAddresses means the node's primary IP in nftables mode (upstream's default).
   */
  private async nodePortIPs(state: ProxyState): Promise<string[] | null> {
    const resolved = resolveNodePortAddresses(this.config.nodePortAddresses, this.ipFamily, state.node.addresses[0], { whenUnset: 'primary' });
    if (resolved.matchAll) return null;
    const ctx = this.requireCtx();
    const ips = await currentNodePortIPs(ctx.runner, this.ipFamily, resolved, this.setup?.nodePortIPs ?? undefined, ctx.logger);
    // Localhost NodePorts are not supported in nftables mode.
    return ips.filter((ip) => !ip.startsWith('127.') && ip !== '::1');
  }

  private forget(): void {
    this.services = new Map();
    this.elements = new Map();
    this.staleElements = new Map();
    this.affinitySets = new Map();
    this.setup = undefined;
    this.staleChains.clear();
    this.needFullSync = true;
    this.kernelUnknown = true;
    this.lastTransactions = [];
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private requireCtx(): BackendContext {
    if (!this.ctx) throw new Error('nftables backend: not started');
    return this.ctx;
  }

  private metrics() {
    const registry = this.requireCtx().metrics;
    return {
      syncFailures: counter(registry, {
        name: 'sync_proxy_rules_nftables_sync_failures_total',
        help: 'Cumulative proxy nftables sync failures',
        labelNames: ['ip_family'] as const,
      }),
      cleanupFailures: counter(registry, {
        name: 'sync_proxy_rules_nftables_cleanup_failures_total',
        help: 'Cumulative proxy nftables cleanup failures',
        labelNames: ['ip_family'] as const,
      }),
    };
  }
}

/**
 * Adds (sign 1) or removes (-1) the elements of one service port to `into`, whose entries
 * start from `base` (what is held) when first touched. An element another service port also
 * wants keeps its count above zero.
 */
function countElements(into: Elements, objects: ServiceObjects, sign: 1 | -1, base?: Elements): void {
  for (const [container, els] of objects.elements) {
    let m = into.get(container);
    if (!m) into.set(container, (m = new Map()));
    for (const [k, v] of els) {
      const e = m.get(k) ?? base?.get(container)?.get(k) ?? { value: v, refs: 0 };
      m.set(k, { value: sign > 0 ? v : e.value, refs: e.refs + sign });
    }
  }
}

function sameElement(a: ElementValue, b: ElementValue): boolean {
  return a.value === b.value && a.comment === b.comment;
}

function sameRules(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((r, i) => r === b[i]);
}

/** Equal address lists (null: every local address). */
function sameList(a: readonly string[] | null, b: readonly string[] | null): boolean {
  return a === null || b === null ? a === b : sameRules(a, b);
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

export function createNftablesBackend(options: NftablesBackendOptions): NftablesBackend {
  return new NftablesBackend(options);
}
