// The iptables backend: upstream's layout, written with iptables-restore --noflush --counters.
// What we wrote is remembered, so steady-state syncs neither read the kernel nor rewrite what did
// not change. Full syncs list the built-in chains for our jumps, and dump nat for leftovers of
// ours only when what we wrote is unknown (start, failure, a deleted canary chain).

import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import {
  type Backend,
  type BackendContext,
  type BackendFactory,
  type BackendOptions,
  type ChangeSet,
  type ExplainPacket,
  type Explanation,
  type IPFamily,
  type KernelView,
  type NodeInfo,
  type ServicePort,
  type ProxyConfig,
  type ProxyState,
  type Requirement,
  type ServicePortKey,
  type SyncResult,
  SyncProgress,
} from '@kube-proxy-ts/core';
import {
  createLocalTrafficDetector,
  clearStaleUDPFlows,
  keptPayloads,
  detectIptablesFlavour,
  driftCounter,
  ensureNFAcctCounters,
  iptablesCommands,
  iptablesHasRandomFully,
  iptablesRequirements,
  hasJump,
  deleteJumps,
  describeRestoreFailure,
  jumpRuleArgs,
  type JumpRule,
  iptablesRestoreMetrics,
  isServiceChainName,
  currentNodePortIPs,
  NFACCT_CT_STATE_INVALID_DROPPED,
  NFACCT_LOCALHOST_NODEPORTS_ACCEPTED,
  registerDriftSeries,
  parseIptablesSave,
  resolveNodePortAddresses,
  RestoreTableWriter,
  ruleLines,
  runIptablesRestore,
  type IptablesCommands,
  type IptablesFlavour,
  type RestoreResult,
  type SavedChain,
  type SavedTable,
} from '@kube-proxy-ts/netfilter';
import { canaryCheckInterval, checkCanaries } from './canary.js';
import { iptablesMetrics } from './metrics.js';
import { iptablesExplain, iptablesKernelView, saveTablesForInspection } from './kernel-view.js';
import {
  FULL_SYNC_PERIOD_MS,
  JUMP_RULES,
  KUBE_EXTERNAL_SERVICES,
  KUBE_FIREWALL,
  KUBE_FORWARD,
  KUBE_KUBELET_CANARY,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_PROXY_CANARY,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
  KUBELET_FIREWALL_JUMPS,
} from './layout.js';
import { computeRules, markMasqRules, releaseChainRules, RuleSetBuilder, type RuleOptions, type RuleSet, type ServicePortRules } from './rules.js';
import {
  chainRemovalTransactions,
  commitPlan,
  DEFAULT_LIMITS,
  LEGACY_LIMITS,
  ORDER_FREE_CHAINS,
  planSync,
  POPULATED_LIMITS,
  POPULATED_TABLE_CHAINS,
  ruleCounts,
  serviceChainsTransaction,
  ServiceGrouper,
  type KernelModel,
  type IptablesPlanLimits,
  type IptablesSyncPlan,
} from './sync-plan.js';

export interface IptablesBackendOptions extends BackendOptions {
  /** Which iptables to drive; "auto" (default) detects the host's, as iptables-wrapper does. */
  readonly flavour?: IptablesFlavour | 'auto';
  /** Bounds of each kernel transaction. */
  readonly limits?: IptablesPlanLimits;
  /** Kill an iptables process after this long. Default 120 s. */
  readonly commandTimeoutMs?: number;
}

const NAME = 'iptables';

/** Service ports computed between two turns of the event loop while a restore runs. */
const COMPUTE_STEP = 25;

interface SyncDecision {
  readonly full: boolean;
  readonly reason: string;
}

export class IptablesBackend implements Backend {
  readonly name = NAME;
  readonly requirements: readonly Requirement[];
  private readonly family: IPFamily;
  private readonly config: ProxyConfig;
  private ctx: BackendContext | undefined;
  private commands: IptablesCommands | undefined;
  private conntrackTCPLiberal = false;
  private localhostNodePorts = false;
  private nfacctCounters: ReadonlySet<string> = new Set();
  /** What the kernel holds from us; undefined when unknown. */
  private model: KernelModel | undefined;
  private previousRules: RuleSet | undefined;
  private needFullSync = true;
  private lastFullSync = -Infinity;
  private lastCanaryCheck = -Infinity;
  private nodePortIPs: string[] | undefined;
  private payloads: string[] = [];
  private routeLocalnetSet = false;
  private randomFully = false;

  constructor(private readonly options: IptablesBackendOptions) {
    this.family = options.ipFamily;
    this.config = options.config;
    this.requirements = iptablesRequirements(options.ipFamily);
  }

  private get timeoutMs(): number {
    return this.options.commandTimeoutMs ?? 120_000;
  }

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    const logger = ctx.logger.child({ backend: NAME, ipFamily: this.family });
    if (!this.commands) {
      const detection = await detectIptablesFlavour(ctx.runner, this.options.flavour ?? 'auto');
      this.commands = iptablesCommands(detection.flavour, this.family);
      logger.info({ flavour: detection.flavour, reason: detection.reason }, 'using iptables flavour');
    }
    this.randomFully = await iptablesHasRandomFully(ctx.runner, this.commands);
    if (!this.randomFully) logger.info('iptables does not support --random-fully (needs 1.6.2 or newer): MASQUERADE without it');
    const addresses = resolveNodePortAddresses(this.config.nodePortAddresses, this.family, ctx.node.addresses[0]);
    this.localhostNodePorts = this.family === 'IPv4' && this.config.iptables.localhostNodePorts && addresses.containsIPv4Loopback;
    const liberal = await this.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_tcp_be_liberal']);
    this.conntrackTCPLiberal = liberal.code === 0 && liberal.stdout.trim() !== '' && liberal.stdout.trim() !== '0';
    if (this.conntrackTCPLiberal) logger.info('nf_conntrack_tcp_be_liberal set, not installing DROP rules for INVALID packets');
    // As upstream's NewProxier: the nfacct objects the rules count into; where nfacct is missing the rules do without.
    this.nfacctCounters = await ensureNFAcctCounters(ctx.runner, [NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED], logger);
    registerDriftSeries(ctx.metrics, this.family);
    // A (re)start trusts nothing it remembers.
    this.needFullSync = true;
    this.model = undefined;
  }

  /** The iptables-restore payloads of the last sync, in the order they were applied; empty when they exceeded 1 MB. */
  lastPayload(): string {
    return this.payloads.join('');
  }

  /** The rules for `state`, computed without touching the kernel (for --dry-run). */
  computeRules(state: ProxyState): RuleSet {
    return computeRules(state, this.ruleOptions(state));
  }

  /** The payloads a full sync of `state` would apply from scratch, without touching the kernel. */
  dryRun(state: ProxyState): string {
    const rules = this.computeRules(state);
    const plan = planSync({ rules, model: undefined, full: true, changed: new Set(), previous: undefined, canary: true, missingJumps: this.wantedJumps(), limits: this.limits() });
    return plan.transactions.map((t) => t.payload).join('');
  }

  /** Transaction bounds for a sync into a table holding `kernelChains` of our service chains. */
  private limits(kernelChains = 0): IptablesPlanLimits {
    if (this.options.limits) return this.options.limits;
    if (this.commands?.flavour === 'legacy') return LEGACY_LIMITS;
    return kernelChains >= POPULATED_TABLE_CHAINS ? POPULATED_LIMITS : DEFAULT_LIMITS;
  }

  private wantedJumps(): JumpRule[] {
    // IPv6 always: the chain is there (empty), as upstream ensures it; see rules.ts.
    return [...JUMP_RULES, ...(this.localhostNodePorts || this.family === 'IPv6' ? KUBELET_FIREWALL_JUMPS : [])];
  }

  private ruleOptions(state: ProxyState): RuleOptions {
    const nodeIP = state.node.addresses[0];
    const addresses = resolveNodePortAddresses(this.config.nodePortAddresses, this.family, nodeIP);
    return {
      masqueradeAll: this.config.iptables.masqueradeAll,
      masqueradeBit: this.config.iptables.masqueradeBit,
      localDetector: createLocalTrafficDetector(this.config, this.family, state.node),
      localhostNodePorts: this.localhostNodePorts,
      randomFully: this.randomFully,
      conntrackTCPLiberal: this.conntrackTCPLiberal,
      nodePortsOnAllAddresses: addresses.matchAll,
      nodePortIPs: this.nodePortIPs ?? [],
      nodeIP,
      nfacctCounters: this.nfacctCounters,
    };
  }

  private async run(command: string, args: string[], stdin?: string) {
    const ctx = this.ctx!;
    try {
      return await ctx.runner.run(command, args, { timeoutMs: this.timeoutMs, ...(stdin !== undefined ? { stdin } : {}) });
    } catch (err) {
      return { code: 127, stdout: '', stderr: err instanceof Error ? err.message : String(err) };
    }
  }

  private async save(table: string): Promise<SavedTable | undefined> {
    const r = await this.run(this.commands!.save, ['-t', table]);
    if (r.code !== 0) {
      this.ctx?.logger.warn({ table, stderr: r.stderr.trim() }, 'iptables-save failed');
      return undefined;
    }
    return parseIptablesSave(r.stdout).get(table) ?? new Map();
  }

  /**
   * Our jumps the built-in chains lack. Each built-in chain is listed alone (`-S CHAIN`), which
   * costs milliseconds however many chains the table holds; a chain that cannot be listed has
   * its jumps checked one by one (`-C`).
   */
  private async missingJumps(): Promise<JumpRule[]> {
    const missing: JumpRule[] = [];
    const listed = new Map<string, SavedChain | undefined>();
    for (const jump of this.wantedJumps()) {
      const key = `${jump.table}/${jump.from}`;
      if (!listed.has(key)) {
        const r = await this.run(this.commands!.iptables, ['-w', '-t', jump.table, '-S', jump.from]);
        listed.set(key, r.code === 0 ? (parseIptablesSave(`*${jump.table}\n${r.stdout}\nCOMMIT\n`).get(jump.table)?.get(jump.from) ?? { name: jump.from, policy: undefined, rules: [] }) : undefined);
      }
      const chain = listed.get(key);
      const present = chain ? hasJump(chain.rules, jump) : (await this.run(this.commands!.iptables, ['-w', '-t', jump.table, '-C', jump.from, ...jumpRuleArgs(jump)])).code === 0;
      if (!present) missing.push(jump);
    }
    return missing;
  }

  /**
   * Whether a canary chain is gone (see canary.ts). Then what we remember having written is
   * forgotten: the full sync that follows reads nat again and rewrites everything.
   */
  private async canaryDeleted(): Promise<boolean> {
    const ctx = this.ctx!;
    const now = ctx.clock.now();
    if (now - this.lastCanaryCheck < canaryCheckInterval(this.config.iptables.syncPeriod)) return false;
    this.lastCanaryCheck = now;
    const status = await checkCanaries(ctx.runner, this.commands!.iptables, this.timeoutMs);
    if (status.state === 'unknown') {
      ctx.logger.warn({ reason: status.reason }, 'could not check the iptables canary chains');
      return false;
    }
    if (status.state === 'present') return false;
    ctx.logger.warn({ tables: status.tables }, 'iptables canary chain deleted; resyncing');
    driftCounter(ctx.metrics).inc({ ip_family: this.family });
    this.model = undefined;
    return true;
  }

  private async decide(changes: ChangeSet): Promise<SyncDecision> {
    const now = this.ctx!.clock.now();
    if (this.needFullSync || !this.model) return { full: true, reason: 'start or previous failure' };
    if (changes.nodeChanged) return { full: true, reason: 'node changed' };
    if (now - this.lastFullSync > FULL_SYNC_PERIOD_MS) return { full: true, reason: 'periodic full sync' };
    if (await this.canaryDeleted()) return { full: true, reason: 'canary chain deleted' };
    return { full: false, reason: 'partial' };
  }

  async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    const ctx = this.ctx;
    if (!ctx || !this.commands) return { ok: false, full: true, error: new Error('iptables backend used before start()') };
    const logger = ctx.logger;
    const labels = { ip_family: this.family };
    let decision: SyncDecision = { full: true, reason: 'start' };
    try {
      decision = await this.decide(changes);
      let { full } = decision;
      if (full && this.localhostNodePorts && !this.routeLocalnetSet) {
        // Only when programming rules, not for a --cleanup run (which also starts the backend).
        logger.info('setting route_localnet=1 to allow node ports on localhost; disable iptables.localhostNodePorts or restrict nodePortAddresses to avoid it');
        const r = await this.run('sysctl', ['-w', 'net.ipv4.conf.all.route_localnet=1']);
        if (r.code === 0) this.routeLocalnetSet = true;
        else logger.warn({ stderr: r.stderr.trim() }, 'could not set route_localnet');
      }

      // Restricted NodePorts follow the node's addresses at every sync, as upstream reads them:
      // a changed list rewrites the NodePort jumps at the end of KUBE-SERVICES.
      const nodePortAddresses = resolveNodePortAddresses(this.config.nodePortAddresses, this.family, state.node.addresses[0]);
      if (!nodePortAddresses.matchAll) {
        this.nodePortIPs = await currentNodePortIPs(ctx.runner, this.family, nodePortAddresses, this.nodePortIPs, logger);
      }

      const options = this.ruleOptions(state);
      const builder = new RuleSetBuilder(state, options, full ? {} : { previous: this.previousRules, changed: changes.servicePorts });
      if (!full && builder.fingerprint !== this.previousRules?.fingerprint) {
        // Something every service's rules depend on moved (e.g. large-cluster mode): all are
        // recomputed, so write them all.
        full = true;
        decision = { full, reason: 'rule options changed' };
      }

      // On a full sync, read the kernel: jumps to restore, and, when we do not know what we
      // wrote (start, failure), leftovers of ours to delete. Dumping nat costs seconds at 10k
      // services, so a periodic full sync takes our chains from what it wrote.
      let kernelServiceChains: ReadonlySet<string> | undefined;
      let jumps: JumpRule[] = [];
      if (full) {
        jumps = await this.missingJumps();
        if (this.model) {
          kernelServiceChains = new Set(this.model.serviceChains.keys());
        } else {
          const nat = await this.save('nat');
          kernelServiceChains = new Set([...(nat?.keys() ?? [])].filter(isServiceChainName));
        }
      }
      const limits = this.limits(Math.max(kernelServiceChains?.size ?? 0, this.model?.serviceChains.size ?? 0));

      this.payloads = [];
      const timing = { computeMs: 0, applyStart: undefined as number | undefined };
      const applied = new Set<ServicePortKey>();
      if (full && builder.size > limits.maxServicesPerTransaction) {
        timing.applyStart = ctx.clock.now();
        const failure = await this.applyWhileComputing(builder, limits, options.masqueradeBit, applied, timing);
        if (failure) return this.failed(decision, failure.result, failure.index);
      }
      let started = ctx.clock.now();
      const rules = builder.finish();
      timing.computeMs += ctx.clock.now() - started;
      for (const [key, reason] of rules.skipped) logger.warn({ servicePort: key, reason }, 'service port skipped: its rules cannot be written safely');

      started = ctx.clock.now();
      const plan: IptablesSyncPlan = planSync({
        rules,
        model: full ? undefined : this.model,
        full,
        changed: changes.servicePorts,
        applied,
        previous: this.previousRules,
        ...(kernelServiceChains ? { kernelServiceChains } : {}),
        missingJumps: jumps,
        canary: full,
        limits,
      });
      const planMs = ctx.clock.now() - started;

      timing.applyStart ??= ctx.clock.now();
      const first = this.payloads.length;
      const progress = new SyncProgress(ctx.logger, ctx.clock, plan.transactions.reduce((n, tx) => n + tx.services, 0));
      let servicesDone = 0;
      for (const [i, tx] of plan.transactions.entries()) {
        this.payloads.push(tx.payload);
        const result = await runIptablesRestore(ctx.runner, this.commands.restore, tx.payload, { timeoutMs: this.timeoutMs });
        if (!result.ok) return this.failed(decision, result, first + i, first + plan.transactions.length);
        progress.written((servicesDone += tx.services));
      }
      const applyMs = ctx.clock.now() - timing.applyStart - planMs;
      const computeMs = timing.computeMs;

      this.model = commitPlan(this.model, plan);
      const counts = ruleCounts(this.model);
      this.previousRules = rules;
      // Kept for reuse and inspect(); the chains' text is rebuilt when read.
      for (const serviceRules of rules.services.values()) releaseChainRules(serviceRules);
      this.needFullSync = false;
      if (full) {
        this.lastFullSync = ctx.clock.now();
        this.lastCanaryCheck = this.lastFullSync; // the canaries were just (re)created
      }

      const { rulesTotal, rulesLast } = iptablesMetrics(ctx.metrics);
      rulesTotal.set({ table: 'nat', ...labels }, counts.nat);
      rulesTotal.set({ table: 'filter', ...labels }, counts.filter);
      const written = { nat: 0, filter: 0 };
      for (const payload of this.payloads) {
        const n = countRuleLines(payload);
        written.nat += n.nat;
        written.filter += n.filter;
      }
      rulesLast.set({ table: 'nat', ...labels }, written.nat);
      rulesLast.set({ table: 'filter', ...labels }, written.filter);

      const conntrack = await this.cleanConntrack(state, changes);
      const stats = {
        services: rules.services.size,
        endpoints: rules.totalEndpoints,
        largeClusterMode: rules.largeClusterMode ? 1 : 0,
        transactions: this.payloads.length,
        payloadBytes: this.payloads.reduce((n, p) => n + p.length, 0),
        servicesWritten: plan.stats.servicesWritten,
        chainsDeleted: plan.stats.chainsDeleted,
        topLevelRewritten: plan.stats.topLevelRewritten,
        topLevelPatched: plan.stats.topLevelPatched,
        natRules: counts.nat,
        filterRules: counts.filter,
        computeMs,
        planMs,
        applyMs,
        conntrackDeleted: conntrack,
        skipped: rules.skipped.size,
      };
      logger.debug({ ...stats, reason: decision.reason }, 'iptables sync done');
      this.payloads = keptPayloads(this.payloads);
      return { ok: true, full, stats };
    } catch (err) {
      // Never throw out of sync: report, and start over with a full sync.
      this.needFullSync = true;
      this.model = undefined;
      const error = err instanceof Error ? err : new Error(String(err));
      logger.error({ err: error.message }, 'iptables sync failed');
      return { ok: false, full: decision.full, error };
    }
  }

  /**
   * Writes the per-service chains of a large full sync while computing them: each group's
   * restore runs while the next group is computed, so the kernel's work and ours overlap (at
   * 10k services, seconds of computing). Adds the written service ports to `applied`; returns
   * the failed restore, if one failed (nothing references these chains before the top-level
   * transaction, or they are rewritten in place).
   */
  private async applyWhileComputing(
    builder: RuleSetBuilder,
    limits: IptablesPlanLimits,
    masqueradeBit: number,
    applied: Set<ServicePortKey>,
    timing: { computeMs: number },
  ): Promise<{ result: RestoreResult; index: number } | undefined> {
    const ctx = this.ctx!;
    const markMasq = markMasqRules(masqueradeBit);
    const grouper = new ServiceGrouper(limits);
    let running: { promise: Promise<RestoreResult>; keys: ServicePortKey[]; index: number } | undefined;
    const settle = async () => {
      if (!running) return undefined;
      const { promise, keys, index } = running;
      running = undefined;
      const result = await promise;
      if (!result.ok) return { result, index };
      for (const key of keys) applied.add(key);
      return undefined;
    };
    const launch = async (group: Array<[ServicePortKey, ServicePortRules]>) => {
      const started = ctx.clock.now();
      const tx = serviceChainsTransaction(markMasq, group.map(([, rules]) => rules));
      timing.computeMs += ctx.clock.now() - started;
      const failure = await settle();
      if (failure) return failure;
      this.payloads.push(tx.payload);
      // Awaited only after the next group is computed: a rejection must not go unhandled meanwhile.
      const promise = runIptablesRestore(ctx.runner, this.commands!.restore, tx.payload, { timeoutMs: this.timeoutMs }).catch(
        (err: unknown): RestoreResult => ({ ok: false, code: 127, stderr: err instanceof Error ? err.message : String(err) }),
      );
      running = { promise, keys: group.map(([key]) => key), index: this.payloads.length - 1 };
      return undefined;
    };
    while (!builder.done) {
      const started = ctx.clock.now();
      const batch = builder.advance(COMPUTE_STEP);
      timing.computeMs += ctx.clock.now() - started;
      for (const [key, rules] of batch) {
        if (rules.chainNames.length === 0) continue;
        const closed = grouper.add(key, rules);
        const failure = closed ? await launch(closed) : undefined;
        if (failure) {
          await settle();
          return failure;
        }
      }
      // Let the event loop feed the running restore its payload (a pipe holds 64 KiB).
      await setImmediatePromise();
    }
    const last = grouper.take();
    const failure = last.length > 0 ? await launch(last) : undefined;
    if (failure) return failure;
    return settle();
  }

  private failed(decision: SyncDecision, result: RestoreResult, index: number, count?: number): SyncResult {
    const ctx = this.ctx!;
    const labels = { ip_family: this.family };
    const restoreMetrics = iptablesRestoreMetrics(ctx.metrics);
    restoreMetrics.failures.inc(labels);
    if (!decision.full) restoreMetrics.partialFailures.inc(labels);
    // Earlier transactions may have applied: what the kernel holds is unknown until the next full sync reads it.
    this.needFullSync = true;
    this.model = undefined;
    const error = new Error(describeRestoreFailure(this.commands!.restore, result, `transaction ${index + 1}${count ? ` of ${count}` : ''}`));
    ctx.logger.error({ err: error.message, line: result.failedLine, text: result.failedLineText, full: decision.full }, 'failed to execute iptables-restore');
    return { ok: false, full: decision.full, error };
  }

  private async cleanConntrack(state: ProxyState, changes: ChangeSet): Promise<number> {
    return (await clearStaleUDPFlows(this.ctx!, this.family, state, changes)).deleted;
  }

  async cleanup(cleanupCtx: BackendContext): Promise<void> {
    // A never-started backend (kube-proxy --cleanup) works in the context it is given.
    this.ctx ??= cleanupCtx;
    const ctx = this.ctx;
    if (!this.commands) {
      const detection = await detectIptablesFlavour(ctx.runner, this.options.flavour ?? 'auto');
      this.commands = iptablesCommands(detection.flavour, this.family);
    }
    const errors: string[] = [];
    const mangle = await this.save('mangle');
    // kubelet keeps its own KUBE-FIREWALL; without kubelet on this node, the chain is ours.
    const kubeletPresent = mangle?.has(KUBE_KUBELET_CANARY) ?? true;
    const jumps = [...JUMP_RULES, ...(kubeletPresent ? [] : KUBELET_FIREWALL_JUMPS)];
    await deleteJumps(ctx.runner, jumps, { iptables: this.commands.iptables, timeoutMs: this.timeoutMs });

    const tables: Array<['nat' | 'filter' | 'mangle', string[]]> = [
      ['nat', [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ, KUBE_PROXY_CANARY]],
      ['filter', [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_PROXY_CANARY, ...(kubeletPresent ? [] : [KUBE_FIREWALL])]],
      ['mangle', [KUBE_PROXY_CANARY]],
    ];
    for (const [table, fixed] of tables) {
      const saved = table === 'mangle' ? mangle : await this.save(table);
      if (!saved) {
        errors.push(`iptables-save -t ${table} failed`);
        continue;
      }
      const fixedPresent = fixed.filter((c) => saved.has(c));
      const serviceChains = table === 'nat' ? [...saved.keys()].filter(isServiceChainName).sort() : [];
      if (fixedPresent.length + serviceChains.length === 0) continue;
      const apply = async (payloads: string[]) => {
        for (const payload of payloads) {
          const result = await runIptablesRestore(ctx.runner, this.commands!.restore, payload, { timeoutMs: this.timeoutMs });
          if (!result.ok) return result;
        }
        return undefined;
      };
      // The top-level chains are flushed first: then nothing of ours jumps into a service chain.
      const flushTop = new RestoreTableWriter(table);
      for (const chain of fixedPresent) flushTop.declareChain(chain);
      let failure = await apply(fixedPresent.length > 0 ? [flushTop.toString()] : []);
      if (!failure) failure = await apply(chainRemovalTransactions(table, serviceChains));
      if (failure) {
        errors.push(`${table}: ${failure.stderr.trim()}`);
        continue;
      }
      const fixedFailure = await apply(chainRemovalTransactions(table, fixedPresent));
      if (fixedFailure) {
        // Another program (the IPVS mode) may still reference a shared chain: keep those.
        const canary = fixedPresent.includes(KUBE_PROXY_CANARY) ? await apply(chainRemovalTransactions(table, [KUBE_PROXY_CANARY])) : undefined;
        if (canary) errors.push(`${table}: ${canary.stderr.trim()}`);
        ctx.logger.warn({ table, stderr: fixedFailure.stderr.trim() }, 'some shared KUBE-* chains are still referenced by other rules and were left in place');
      }
    }
    this.model = undefined;
    this.previousRules = undefined;
    this.needFullSync = true;
    this.payloads = [];
    if (errors.length > 0) throw new Error(`iptables cleanup incomplete: ${errors.join('; ')}`);
  }

  /** `kube-proxy inspect`: what the kernel holds for each service port, from one dump of nat and filter. */
  async kernelView(servicePorts: readonly ServicePort[]): Promise<KernelView> {
    if (!this.ctx || !this.commands) throw new Error('the iptables backend has not started');
    return iptablesKernelView(await saveTablesForInspection(this.ctx.runner, this.commands.save, this.timeoutMs), servicePorts, this.family);
  }

  /** `kube-proxy explain`: `packet` walked through the rules the kernel holds. */
  async explain(packet: ExplainPacket, node: NodeInfo): Promise<Explanation> {
    if (!this.ctx || !this.commands) throw new Error('the iptables backend has not started');
    return iptablesExplain(await saveTablesForInspection(this.ctx.runner, this.commands.save, this.timeoutMs), packet, node.addresses, this.family);
  }

  /**
   * What this backend programmed: our chains and their rules as the kernel holds them after our
   * transactions, chains sorted, order-free chains' rules sorted.
   */
  inspect(): Promise<unknown> {
    const model = this.model;
    if (!model) return Promise.resolve({ filter: {}, nat: {}, serviceChains: {} });
    const picture = (table: string, chains: ReadonlyMap<string, readonly string[]>) => {
      const out: Record<string, string[]> = {};
      for (const chain of [...chains.keys()].sort()) {
        const rules = [...chains.get(chain)!];
        if (ORDER_FREE_CHAINS.has(`${table}/${chain}`)) {
          const tail = rules.filter((r) => r.endsWith(`-j ${KUBE_NODEPORTS}`) && table === 'nat' && chain === KUBE_SERVICES);
          out[chain] = [...rules.filter((r) => !tail.includes(r)).sort(), ...tail];
        } else {
          out[chain] = rules;
        }
      }
      return out;
    };
    // Released rules rebuild their chains at each read: once per service port here.
    const texts = new Map<ServicePortRules, ReadonlyMap<string, string>>();
    const serviceChains = new Map<string, string[]>();
    for (const [chain, owner] of model.serviceChains) {
      let chains = texts.get(owner);
      if (!chains) texts.set(owner, (chains = owner.chains));
      serviceChains.set(chain, ruleLines(chains.get(chain) ?? ''));
    }
    return Promise.resolve({ filter: picture('filter', model.filter), nat: picture('nat', model.nat), serviceChains: picture('svc', serviceChains) });
  }
}

function countRuleLines(payload: string): { nat: number; filter: number } {
  let table = '';
  const counts = { nat: 0, filter: 0 };
  for (const line of payload.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if ((line.startsWith('-A ') || line.startsWith('-I ')) && (table === 'nat' || table === 'filter')) counts[table]++;
  }
  return counts;
}

/** The BackendFactory the daemon loads for `--proxy-mode=iptables`. */
export const iptablesBackendFactory: BackendFactory = (options) => new IptablesBackend(options);
