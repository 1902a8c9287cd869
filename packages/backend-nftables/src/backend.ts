// The nftables backend: upstream's nftables proxier, with the layout of layout.ts. Every sync
// plans (sync-plan.ts), per service port, the chains, affinity sets and map elements it needs
// (service-objects.ts) and writes only what differs from what this process last wrote, which it
// remembers: the table is never listed on the steady-state path, and a partial sync's cost
// follows what changed (elements are counted per user, not recomputed). Large syncs are cut into
// bounded transactions (chains first, then the map elements that point at them) so that no single
// netlink batch keeps the kernel busy long. Rules and element additions are written in the block
// forms of transaction.ts, so that the common sync does not make nft read every chain first;
// deletions still do, so stale chains, unused hairpin pairs, retired endpoint-map numbers and
// maps are deleted with a sync that needs that anyway, or later by a timer. A new process reads
// only the names in the table.

import type {
  Backend,
  BackendContext,
  BackendFactory,
  BackendOptions,
  ChangeSet,
  ExplainPacket,
  Explanation,
  IPFamily,
  KernelView,
  NodeInfo,
  ProxyConfig,
  ProxyState,
  Requirement,
  ServicePort,
  ServicePortKey,
  SyncResult,
} from '@kube-proxy-ts/core';
import { SyncProgress, emptyChangeSet } from '@kube-proxy-ts/core';
import {
  clearStaleUDPFlows,
  currentNodePortIPs,
  keptPayloads,
  registerDriftSeries,
  resolveNodePortAddresses,
  ruleLines,
} from '@kube-proxy-ts/netfilter';
import { TableWatch } from './canary.js';
import {
  applyEndpointMaps,
  hasRetired,
  inlineEndpointsMap,
  noEndpointMaps,
  rangeElements,
  retiredElements,
  withoutRetired,
  type EndpointMapsState,
} from './endpoint-maps.js';
import { listExistingObjects, type ExistingObjects } from './existing-objects.js';
import { listTableForInspection, nftablesExplain, nftablesKernelView } from './kernel-view.js';
import { NODEPORT_IPS_SET, SERVICE_CONTAINERS, TABLE, nftFamily, type NftFamily } from './layout.js';
import type { ServiceObjects } from './service-objects.js';
import { baseChainRules, helperChainRules, type SetupOptions } from './setup.js';
import { nftablesMetrics, type NftablesMetrics } from './metrics.js';
import { planSync, sameList, type Elements, type HeldElement, type HeldState, type NftablesPlanLimits, type NftablesSyncPlan } from './sync-plan.js';
import { NftTransaction, renderElement } from './transaction.js';

export interface NftablesBackendOptions extends BackendOptions {
  /**
   * Service ports whose chains go into one nft transaction. Default 3000: each commit that adds
   * rules validates the whole table, so a restarted daemon rewriting a full table pays that once
   * per transaction (10k services x 10 endpoints: 1.15-1.31x the full sync into an empty table
   * with 1000 a transaction, 1.02-1.16x with 3000; bench/nftables.ts --per-tx). The price is nft's
   * memory while it parses one: about 130 MB for 3000 such service ports, 47 MB for 1000.
   */
  readonly servicesPerTransaction?: number;
  /** A transaction is closed before it would exceed this many commands and rules. Default 50000. */
  readonly linesPerTransaction?: number;
  /** Every nft call is killed after this long. Default 60 s. */
  readonly nftTimeoutMs?: number;
  /** Stale chains are flushed at once and deleted this much later (kernels before 6.2 need it). Default 1000 ms. */
  readonly staleChainDelayMs?: number;
}

export class NftablesBackend implements Backend {
  readonly name = 'nftables';
  readonly requirements: readonly Requirement[] = [{ tool: 'nft', args: ['--version'], why: 'writes the nftables ruleset' }];
  readonly ipFamily: IPFamily;
  private readonly family: NftFamily;
  private readonly config: ProxyConfig;
  private readonly limits: NftablesPlanLimits;
  private readonly timeoutMs: number;
  private ctx: BackendContext | undefined;

  // What this process has written and the kernel accepted.
  private services = new Map<ServicePortKey, ServiceObjects>();
  private elements: Elements = new Map();
  /** Unused elements of lazy containers still in the kernel (see ContainerSpec.lazyDeletion). */
  private staleElements = new Map<string, Set<string>>();
  private affinitySets = new Map<string, number>();
  private endpointMaps: EndpointMapsState = noEndpointMaps();
  /** Endpoint maps a full sync left behind (no rule refers to them any more), deleted by the timer. */
  private staleMaps = new Set<string>();
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
    this.limits = {
      ipFamily: options.ipFamily,
      config: options.config,
      servicesPerTransaction: options.servicesPerTransaction ?? 3000,
      linesPerTransaction: options.linesPerTransaction ?? 50_000,
      staleDelayMs: options.staleChainDelayMs ?? 1000,
    };
    this.timeoutMs = options.nftTimeoutMs ?? 60_000;
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

  async cleanup(cleanupCtx: BackendContext): Promise<void> {
    // A never-started backend (kube-proxy --cleanup) works in the context it is given.
    this.ctx ??= cleanupCtx;
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
    // Endpoint-map references are written out, numbered from 0: the picture says where each
    // chain DNATs, not which numbers this process happened to use.
    const values = new Map<string, string>();
    for (const objects of this.services.values()) for (const r of objects.slots) for (const [k, v] of rangeElements(r)) values.set(`${r.map} ${k}`, v.value);
    const valueOf = (map: string, key: string): string | undefined => values.get(`${map} ${key}`);
    for (const objects of this.services.values()) {
      for (const { name, rules } of objects.chains) chains[name] = ruleLines(rules).map((rule) => (objects.slots.length > 0 ? inlineEndpointsMap(rule, valueOf) : rule));
    }
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
  plan(state: ProxyState, changes: ChangeSet, nodePortIPs: readonly string[] | null = null, existing?: ExistingObjects): NftablesSyncPlan {
    const held: HeldState = {
      services: this.services,
      elements: this.elements,
      staleElements: this.staleElements,
      affinitySets: this.affinitySets,
      endpointMaps: this.endpointMaps,
      setup: this.setup,
      staleChains: this.staleChains,
      needFullSync: this.needFullSync,
      baseChainsRecreated: this.baseChainsRecreated,
      now: this.ctx?.clock.now() ?? 0,
    };
    return planSync({ state, changes, nodePortIPs, ...(existing ? { existing } : {}) }, held, this.limits);
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
      // The node's addresses are read at every sync, as upstream does, while the changes are
      // written with those of the last sync: a change does not wait for the listing (nor for its
      // process to be forked first). Addresses that moved follow in a second, small transaction.
      const assumed = this.setup?.nodePortIPs;
      let reading = assumed === undefined ? this.nodePortIPs(state) : undefined;
      const plan = this.plan(state, changes, assumed === undefined ? await reading! : assumed, existing);
      const applying = this.apply(ctx, plan);
      reading ??= this.nodePortIPs(state);
      reading.catch(() => undefined);
      const texts = await applying;
      const nodePortIPs = await reading;
      if (!sameList(plan.next.setup?.nodePortIPs ?? null, nodePortIPs)) texts.push(...(await this.apply(ctx, this.plan(state, emptyChangeSet(), nodePortIPs))));
      this.lastTransactions = keptPayloads(texts);
      await clearStaleUDPFlows(ctx, this.ipFamily, state, changes);
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

  /** Runs a plan's transactions in order and commits it; the texts it sent. */
  private async apply(ctx: BackendContext, plan: NftablesSyncPlan): Promise<string[]> {
    const texts = plan.transactions.map((t) => t.toString());
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
    return texts;
  }

  private commit(plan: NftablesSyncPlan): void {
    const now = this.requireCtx().clock.now();
    const services = plan.next.services;
    if ('replace' in services) this.services = services.replace;
    else {
      for (const [key, objects] of services.patch) {
        if (objects) this.services.set(key, objects);
        else this.services.delete(key);
      }
    }
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
    this.endpointMaps = applyEndpointMaps(this.endpointMaps, plan.next.endpointMaps);
    if ('replace' in plan.next.endpointMaps) for (const name of plan.next.endpointMaps.retiredMaps) this.staleMaps.add(name);
    this.setup = plan.next.setup;
    for (const name of plan.next.reactivated) this.staleChains.delete(name);
    for (const name of plan.next.deleted) this.staleChains.delete(name);
    for (const name of plan.next.newlyStale) this.staleChains.set(name, now);
    if (plan.full) {
      this.needFullSync = false;
      this.kernelUnknown = false;
      this.baseChainsRecreated = true;
    }
    if (this.hasStaleObjects()) this.scheduleStaleDeletion();
  }

  private hasStaleElements(): boolean {
    return [...this.staleElements.values()].some((keys) => keys.size > 0);
  }

  private hasStaleObjects(): boolean {
    return this.staleChains.size > 0 || this.hasStaleElements() || this.staleMaps.size > 0 || hasRetired(this.endpointMaps);
  }

  /** Deletes the stale chains flushed at least staleChainDelayMs ago, in bounded transactions. */
  private async deleteStaleChains(): Promise<void> {
    const ctx = this.requireCtx();
    await this.deleteStaleElements();
    await this.deleteStaleMaps();
    if (this.staleChains.size === 0) return;
    const due = [...this.staleChains].filter(([, at]) => ctx.clock.now() - at >= this.limits.staleDelayMs).map(([name]) => name);
    for (let i = 0; i < due.length; i += this.limits.linesPerTransaction) {
      const batch = due.slice(i, i + this.limits.linesPerTransaction);
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

  /** Deletes the unused elements of lazy containers and the retired endpoint-map ranges, in one transaction. */
  private async deleteStaleElements(): Promise<void> {
    const retired = retiredElements(this.endpointMaps);
    if (!this.hasStaleElements() && retired.length === 0) return;
    const ctx = this.requireCtx();
    const tx = new NftTransaction(this.family, TABLE);
    for (const [container, keys] of this.staleElements) tx.deleteElements(container, [...keys]);
    for (const [map, keys] of retired) tx.deleteElements(map, keys);
    const r = await ctx.runner.run('nft', ['-f', '-'], { stdin: tx.toString(), timeoutMs: this.timeoutMs });
    if (r.code !== 0) {
      // Left in the kernel, they go with the next full sync's flush. That sync also renumbers
      // the endpoints into new maps, so numbers that may still be taken are not used again.
      this.metrics().cleanupFailures.inc({ ip_family: this.ipFamily });
      ctx.logger.warn({ stderr: r.stderr.trim().slice(0, 500) }, 'deleting unused nftables elements failed');
      this.kernelUnknown = true;
      if (retired.length > 0) this.needFullSync = true;
    } else {
      for (const [container, keys] of this.staleElements) for (const k of keys) this.elements.get(container)?.delete(k);
    }
    this.endpointMaps = withoutRetired(this.endpointMaps, retired.map(([map]) => map));
    this.staleElements = new Map();
  }

  /**
   * Deletes the endpoint maps of an earlier numbering, in one transaction; when that fails, one by
   * one, so that a map that cannot go (one still referred to) keeps none of the others.
   */
  private async deleteStaleMaps(): Promise<void> {
    if (this.staleMaps.size === 0) return;
    const ctx = this.requireCtx();
    const deleteMaps = (names: Iterable<string>) => {
      const tx = new NftTransaction(this.family, TABLE);
      for (const name of names) tx.deleteContainer('map', name);
      return ctx.runner.run('nft', ['-f', '-'], { stdin: tx.toString(), timeoutMs: this.timeoutMs });
    };
    const maps = [...this.staleMaps];
    this.staleMaps = new Set();
    if ((await deleteMaps(maps)).code === 0) return;
    const failed = maps.length === 1 ? maps : [];
    if (maps.length > 1) for (const name of maps) if ((await deleteMaps([name])).code !== 0) failed.push(name);
    this.keptMaps(maps, failed);
  }

  /** Endpoint maps that could not be deleted stay in the kernel; a later full sync finds them again. */
  private keptMaps(maps: readonly string[], failed: readonly string[]): void {
    if (failed.length === 0) return;
    this.metrics().cleanupFailures.inc({ ip_family: this.ipFamily });
    this.requireCtx().logger.warn({ maps: failed.slice(0, 10), of: maps.length }, 'deleting old nftables endpoint maps failed');
    this.kernelUnknown = true;
  }

  private scheduleStaleDeletion(): void {
    if (this.staleTimer !== undefined) return;
    const ctx = this.requireCtx();
    this.staleTimer = ctx.clock.setTimeout(() => {
      this.staleTimer = undefined;
      void this.serialized(() => this.deleteStaleChains()).then(
        () => {
          if (this.hasStaleObjects()) this.scheduleStaleDeletion();
        },
        (err: unknown) => ctx.logger.warn({ err: String(err) }, 'stale chain deletion failed'),
      );
    }, this.limits.staleDelayMs + 20);
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
    this.endpointMaps = noEndpointMaps();
    this.staleMaps = new Set();
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

  private metrics(): NftablesMetrics {
    return nftablesMetrics(this.requireCtx().metrics);
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** The nftables mode: one backend per IP family. */
export const nftablesBackendFactory: BackendFactory = (options) => new NftablesBackend(options as NftablesBackendOptions);
