// IPVS mode: one virtual service per service address and port, real servers in masquerade
// mode, addresses on the kube-ipvs0 dummy interface, ipsets and a small fixed iptables layer.
// Each sync reads the kernel once (addresses, ipsets, virtual services) and applies only the
// differences, in bounded batches.

import type {
  Backend,
  BackendContext,
  BackendFactory,
  BackendOptions,
  ChangeSet,
  ExplainPacket,
  Explanation,
  IPFamily,
  KernelView as ServicePortsKernelView,
  ProxyConfig,
  ProxyState,
  Requirement,
  ServicePort,
  SyncResult,
} from '@kube-proxy-ts/core';
import { cidrFamilyOf, ipFamilyOf, joinHostPort } from '@kube-proxy-ts/core';
import {
  IpsetRestoreWriter,
  createLocalTrafficDetector,
  clearStaleUDPFlows,
  detectIptablesFlavour,
  iptablesCommands,
  iptablesRequirements,
  iptablesHasRandomFully,
  ipvsTimeoutArgs,
  listIpvs,
  parseIptablesSave,
  resolveNodePortAddresses,
  runIpsetRestore,
  runIptablesRestore,
  runIpBatch,
  describeRestoreFailure,
  runIpvsadmRestore,
  saveIpsets,
  virtualServerKey,
  type IpsetContent,
  type IptablesCommands,
  type IpvsServiceListing,
  type SavedTable,
} from '@kube-proxy-ts/netfilter';
import { reportDrift, type AppliedIpvs } from './drift.js';
import { ipsetSpecs } from './ipsets.js';
import { ipvsExplain, ipvsKernelView } from './kernel-view.js';
import { buildIptablesCleanup, buildIptablesLayer } from './iptables-layer.js';
import { addressBatch, parseLocalAddresses, type LocalAddresses } from './kernel-addresses.js';
import { COMMAND_TIMEOUT_MS, DUMMY_DEVICE, IPSET_BATCH_LINES, IPVS_CHAINS, IPVSADM_BATCH_LINES, IP_BATCH_LINES } from './layout.js';
import { countIptablesRestoreFailure, registerIpvsSeries } from './metrics.js';
import { ownershipTest } from './ownership.js';
import { chooseScheduler, type SchedulerChoice } from './scheduler.js';
import { computeDesired, diffIpvs, type DrainingRealServer } from './sync-plan.js';

interface KernelView {
  readonly addresses: LocalAddresses;
  readonly sets: Map<string, IpsetContent>;
  readonly ipvs: IpvsServiceListing[];
}

export class IpvsBackend implements Backend {
  readonly name = 'ipvs';
  readonly requirements: readonly Requirement[];
  private readonly family: IPFamily;
  private readonly config: ProxyConfig;
  private readonly scheduler: SchedulerChoice;
  private readonly sets: ReturnType<typeof ipsetSpecs>;
  private ctx: BackendContext | undefined;
  private iptables: IptablesCommands | undefined;
  private randomFully = false;
  private draining = new Map<string, DrainingRealServer>();
  private programmed = new Set<string>();
  /** The next sync rewrites everything (the flag every backend keeps under this name). */
  private needFullSync = true;
  private nodePrepared = false;
  private lastIptablesPayload: string | undefined;
  /** What the last sync left in place, if it succeeded; what is gone of it is drift. */
  private applied: AppliedIpvs | undefined;

  constructor(options: BackendOptions) {
    this.family = options.ipFamily;
    this.config = options.config;
    this.scheduler = chooseScheduler(options.config.ipvs.scheduler);
    this.sets = ipsetSpecs(this.family);
    this.requirements = [
      ...iptablesRequirements(this.family),
      { tool: 'ipset', args: ['--version'], why: 'holds the IPVS-mode address sets' },
      { tool: 'ipvsadm', args: ['--version'], why: 'programs IPVS virtual servers' },
      { path: '/proc/net/ip_vs', why: 'the kernel has no IPVS support (load the ip_vs module, or use --proxy-mode=iptables or nftables)' },
    ];
  }

  /** Takes the context and probes the tools; it changes nothing on the node (--cleanup relies on that). */
  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    if (this.scheduler.warning) ctx.logger.warn({ scheduler: this.config.ipvs.scheduler }, this.scheduler.warning);
    const flavour = await detectIptablesFlavour(ctx.runner);
    this.iptables = iptablesCommands(flavour.flavour, this.family);
    this.randomFully = await iptablesHasRandomFully(ctx.runner, this.iptables);
    ctx.logger.info({ flavour: flavour.flavour, reason: flavour.reason, scheduler: this.scheduler.scheduler }, 'IPVS proxier starting');
    registerIpvsSeries(ctx.metrics, this.family);
  }

  /**
   * The node settings IPVS mode needs, written once before the first sync. The kernel read that
   * precedes it (`ipvsadm -Ln`) loads the ip_vs module, whose sysctls only exist afterwards.
   */
  private async prepareNode(ctx: BackendContext): Promise<void> {
    await this.writeSysctls(ctx);
    const { tcpTimeout, tcpFinTimeout, udpTimeout } = this.config.ipvs;
    const timeouts = ipvsTimeoutArgs(Math.round(tcpTimeout / 1000), Math.round(tcpFinTimeout / 1000), Math.round(udpTimeout / 1000));
    if (timeouts) {
      const r = await ctx.runner.run('ipvsadm', timeouts, { timeoutMs: COMMAND_TIMEOUT_MS });
      if (r.code !== 0) ctx.logger.error({ stderr: r.stderr.trim() }, 'Failed to configure IPVS timeouts');
    }
    this.nodePrepared = true;
  }

  /** Upstream's IPVS sysctls, written through the runner so they stay in the node's namespace. */
  private async writeSysctls(ctx: BackendContext): Promise<void> {
    const settings = [
      'net.ipv4.vs.conntrack=1',
      'net.ipv4.vs.expire_nodest_conn=1',
      'net.ipv4.vs.expire_quiescent_template=1',
      'net.ipv4.ip_forward=1',
    ];
    if (this.config.ipvs.strictARP) settings.push('net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2');
    const r = await ctx.runner.run('sysctl', ['-w', ...settings], { timeoutMs: COMMAND_TIMEOUT_MS });
    if (r.code !== 0) throw new Error(`sysctl -w failed: ${r.stderr.trim()}`);
  }

  private context(): { ctx: BackendContext; iptables: IptablesCommands } {
    if (!this.ctx || !this.iptables) throw new Error('ipvs backend: start() must be called first');
    return { ctx: this.ctx, iptables: this.iptables };
  }

  private async readKernel(ctx: BackendContext): Promise<KernelView> {
    const ip = await ctx.runner.run('ip', ['-j', 'address', 'show'], { timeoutMs: COMMAND_TIMEOUT_MS });
    if (ip.code !== 0) throw new Error(`ip address show failed: ${ip.stderr.trim()}`);
    const names = new Set(this.sets.map((s) => s.name));
    const sets = await saveIpsets(ctx.runner, (n) => names.has(n), COMMAND_TIMEOUT_MS);
    const ipvs = (await listIpvs(ctx.runner, COMMAND_TIMEOUT_MS)).filter((l) => ipFamilyOf(l.service.address) === this.family);
    return { addresses: parseLocalAddresses(ip.stdout, this.family), sets, ipvs };
  }

  /** The virtual servers of this family, one `ipvsadm -Ln` listing. */
  private async listFamilyIpvs(): Promise<IpvsServiceListing[]> {
    const { ctx } = this.context();
    return (await listIpvs(ctx.runner, COMMAND_TIMEOUT_MS)).filter((l) => ipFamilyOf(l.service.address) === this.family);
  }

  /** `kube-proxy inspect`: the virtual servers and real servers each service port owns. */
  async kernelView(servicePorts: readonly ServicePort[]): Promise<ServicePortsKernelView> {
    return ipvsKernelView(await this.listFamilyIpvs(), servicePorts, this.family);
  }

  /** `kube-proxy explain`: the virtual server a packet meets and the weights of its real servers. */
  async explain(packet: ExplainPacket): Promise<Explanation> {
    return ipvsExplain(await this.listFamilyIpvs(), packet, this.family);
  }

  /** nat and filter as iptables-save prints them (one process). */
  private async saveIptables(ctx: BackendContext, iptables: IptablesCommands): Promise<Map<string, SavedTable>> {
    const r = await ctx.runner.run(iptables.save, [], { timeoutMs: COMMAND_TIMEOUT_MS });
    if (r.code !== 0) throw new Error(`${iptables.save} failed: ${r.stderr.trim()}`);
    const tables = parseIptablesSave(r.stdout);
    return new Map([...tables].filter(([name]) => name === 'nat' || name === 'filter'));
  }

  async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    const full = this.needFullSync;
    try {
      const { ctx, iptables } = this.context();
      const kernel = await this.readKernel(ctx);
      reportDrift(ctx, this.family, this.needFullSync ? undefined : this.applied, kernel);
      this.applied = undefined;
      if (!this.nodePrepared) await this.prepareNode(ctx);
      const stats: Record<string, number> = {};

      if (!kernel.addresses.dummyExists) {
        const r = await ctx.runner.run('ip', ['link', 'add', DUMMY_DEVICE, 'type', 'dummy'], { timeoutMs: COMMAND_TIMEOUT_MS });
        if (r.code !== 0 && !/exists/i.test(r.stderr)) throw new Error(`creating ${DUMMY_DEVICE} failed: ${r.stderr.trim()}`);
      }

      const desired = computeDesired({
        state,
        scheduler: this.scheduler.scheduler,
        schedulerFlags: this.scheduler.flags,
        nodeAddresses: kernel.addresses.node,
        nodePortAddresses: resolveNodePortAddresses(this.config.nodePortAddresses, this.family, state.node.addresses[0]),
      });
      for (const problem of desired.problems) ctx.logger.warn({ ipFamily: this.family }, problem);

      // 1. ipsets first: the iptables rules match on them.
      const ipsetPayload = new IpsetRestoreWriter();
      let entriesAdded = 0;
      let entriesRemoved = 0;
      for (const spec of this.sets) {
        const have = kernel.sets.get(spec.name);
        if (!have) ipsetPayload.create(spec);
        // Desired entries are already spelled as ipset saves them (see computeDesired).
        const want = desired.ipsetEntries.get(spec.key) ?? new Set<string>();
        for (const e of want) {
          if (have?.entries.has(e)) continue;
          ipsetPayload.add(spec.name, e);
          entriesAdded++;
        }
        for (const e of have?.entries ?? []) {
          if (want.has(e)) continue;
          ipsetPayload.del(spec.name, e);
          entriesRemoved++;
        }
      }
      const ipsetResult = await runIpsetRestore(ctx.runner, ipsetPayload.toString(), { maxLines: IPSET_BATCH_LINES, timeoutMs: COMMAND_TIMEOUT_MS });
      if (!ipsetResult.ok) throw new Error(`ipset restore failed: ${ipsetResult.stderr}`);
      Object.assign(stats, { ipsetEntriesAdded: entriesAdded, ipsetEntriesRemoved: entriesRemoved, ipsetBatches: ipsetResult.batches });

      // 2. Addresses on kube-ipvs0 (added before the virtual services that use them).
      const addresses = addressBatch(kernel.addresses.bound, desired.bindAddresses, this.family);
      for (const stderr of await runIpBatch(ctx.runner, addresses.payload, { maxLines: IP_BATCH_LINES, timeoutMs: COMMAND_TIMEOUT_MS })) {
        ctx.logger.warn({ stderr }, `some ${DUMMY_DEVICE} address changes failed`);
      }
      Object.assign(stats, { addressesAdded: addresses.added, addressesRemoved: addresses.removed });

      // 3. Virtual services and real servers.
      const isOurs = this.ownership(kernel, this.programmed);
      const diff = diffIpvs({ desired: desired.virtualServices, current: kernel.ipvs, isOurs, draining: this.draining });
      const ipvsResult = await runIpvsadmRestore(ctx.runner, diff.payload, { maxLines: IPVSADM_BATCH_LINES, timeoutMs: COMMAND_TIMEOUT_MS });
      this.draining = diff.draining;
      this.programmed = new Set(desired.virtualServices.keys());
      Object.assign(stats, diff.counts, { virtualServices: desired.virtualServices.size, ipvsadmBatches: ipvsResult.batches });
      if (!ipvsResult.ok) throw new Error(`ipvsadm --restore reported: ${ipvsResult.errors.slice(0, 5).join('; ')}`);

      // 4. The fixed iptables layer.
      const saved = await this.saveIptables(ctx, iptables);
      const nonEmptySets = new Set([...desired.ipsetEntries].filter(([, e]) => e.size > 0).map(([k]) => k));
      const layer = buildIptablesLayer({
        family: this.family,
        masqueradeBit: this.config.iptables.masqueradeBit,
        masqueradeAll: this.config.iptables.masqueradeAll,
        randomFully: this.randomFully,
        localDetector: createLocalTrafficDetector(this.config, this.family, state.node),
        nonEmptySets,
        lbNoNodeAccess: desired.lbNoNodeAccess,
        saved,
      });
      // The layer is fixed-size and mostly unchanged: rewrite it only when it differs from what
      // was last written or the kernel lost some of it (a chain, a rule or a jump).
      const chainsPayload = layer.payload.split('\n').filter((l) => !l.startsWith('-I ')).join('\n');
      const intact = layer.jumpsAdded === 0 && chainsPayload === this.lastIptablesPayload && chainsIntact(saved, chainsPayload);
      const restore = intact ? { ok: true as const } : await runIptablesRestore(ctx.runner, iptables.restore, layer.payload, { timeoutMs: COMMAND_TIMEOUT_MS });
      this.lastIptablesPayload = restore.ok ? chainsPayload : undefined;
      stats.iptablesRestored = intact ? 0 : 1;
      if (!restore.ok) {
        countIptablesRestoreFailure(ctx.metrics, this.family);
        throw new Error(describeRestoreFailure(iptables.restore, restore));
      }
      stats.iptablesJumpsAdded = layer.jumpsAdded;

      // Only now do the removed endpoints have no real server left: a UDP client whose
      // conntrack entry still names one would keep sending into it. Kernels since 5.9 expire
      // IPVS's own entries of a deleted real server (expire_nodest_conn); older ones do not,
      // and entries of deleted ClusterIPs are never IPVS's to expire.
      const conntrack = await clearStaleUDPFlows(ctx, this.family, state, changes);
      stats.conntrackEntriesDeleted = conntrack.deleted;

      this.applied = { virtualServices: new Set(desired.virtualServices.keys()), addresses: desired.bindAddresses };
      this.needFullSync = false;
      return { ok: true, full, stats };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.ctx?.logger.error({ err: error.message, ipFamily: this.family }, 'IPVS sync failed');
      return { ok: false, full, error };
    }
  }

  /** Which virtual services in `kernel` are ours (see ownership.ts). */
  private ownership(kernel: KernelView, programmed: ReadonlySet<string>) {
    return ownershipTest({
      family: this.family,
      savedSets: kernel.sets,
      bound: kernel.addresses.bound,
      nodeAddresses: kernel.addresses.node,
      programmed,
      excludeCIDRs: this.excludeCIDRs(),
    });
  }

  private excludeCIDRs(): string[] {
    return this.config.ipvs.excludeCIDRs.filter((c) => cidrFamilyOf(c) === this.family);
  }

  async cleanup(cleanupCtx: BackendContext): Promise<void> {
    // A never-started backend (kube-proxy --cleanup) only needs to know the iptables flavour.
    if (!this.ctx) {
      this.ctx = cleanupCtx;
      this.iptables = iptablesCommands((await detectIptablesFlavour(cleanupCtx.runner)).flavour, this.family);
    }
    const { ctx, iptables } = this.context();
    const kernel = await this.readKernel(ctx);
    const isOurs = this.ownership(kernel, this.programmed);
    const diff = diffIpvs({ desired: new Map(), current: kernel.ipvs, isOurs, draining: new Map() });
    const ipvsResult = await runIpvsadmRestore(ctx.runner, diff.payload, { maxLines: IPVSADM_BATCH_LINES, timeoutMs: COMMAND_TIMEOUT_MS });
    const problems: string[] = ipvsResult.ok ? [] : [`ipvsadm: ${ipvsResult.errors.slice(0, 3).join('; ')}`];

    // Chains go before sets: a set cannot be destroyed while a rule references it.
    const cleanupPayload = buildIptablesCleanup(await this.saveIptables(ctx, iptables));
    if (cleanupPayload !== '') {
      const r = await runIptablesRestore(ctx.runner, iptables.restore, cleanupPayload, { timeoutMs: COMMAND_TIMEOUT_MS });
      if (!r.ok) problems.push(`${iptables.restore}: ${r.stderr.trim()}`);
    }
    const destroy = new IpsetRestoreWriter();
    for (const spec of this.sets) if (kernel.sets.has(spec.name)) destroy.destroy(spec.name);
    const ipsetResult = await runIpsetRestore(ctx.runner, destroy.toString(), { timeoutMs: COMMAND_TIMEOUT_MS });
    if (!ipsetResult.ok) problems.push(`ipset: ${ipsetResult.stderr}`);
    if (kernel.addresses.dummyExists) {
      const r = await ctx.runner.run('ip', ['link', 'del', DUMMY_DEVICE], { timeoutMs: COMMAND_TIMEOUT_MS });
      if (r.code !== 0 && !/cannot find|does not exist/i.test(r.stderr)) problems.push(`ip link del: ${r.stderr.trim()}`);
    }
    this.draining.clear();
    this.programmed.clear();
    this.lastIptablesPayload = undefined;
    this.needFullSync = true;
    if (problems.length > 0) throw new Error(`IPVS cleanup incomplete: ${problems.join(' | ')}`);
  }

  /** The data plane this backend owns, read back from the kernel, in a canonical order. */
  async inspect(): Promise<unknown> {
    const { ctx, iptables } = this.context();
    const kernel = await this.readKernel(ctx);
    const isOurs = this.ownership(kernel, new Set());
    const virtualServices = kernel.ipvs
      .filter((l) => isOurs(l.service))
      .map((l) => ({
        service: virtualServerKey(l.service),
        scheduler: [l.service.scheduler, ...l.service.schedulerFlags].join(' '),
        persistentTimeout: l.service.persistentTimeout ?? null,
        realServers: l.realServers.map((rs) => `${joinHostPort(rs.address, rs.port)} ${rs.forward} w=${rs.weight}`).sort(),
      }))
      .sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
    const ipsets = Object.fromEntries(this.sets.filter((s) => kernel.sets.has(s.name)).map((s) => [s.name, [...kernel.sets.get(s.name)!.entries].sort()]));
    const saved = await this.saveIptables(ctx, iptables);
    const chains: Record<string, string[]> = {};
    for (const table of ['nat', 'filter'] as const) {
      for (const chain of IPVS_CHAINS[table]) {
        const c = saved.get(table)?.get(chain);
        if (c) chains[`${table}/${chain}`] = c.rules;
      }
    }
    return { virtualServices, ipsets, addresses: [...kernel.addresses.bound].sort(), dummyDevice: kernel.addresses.dummyExists, iptables: chains };
  }
}

/** Every chain of the payload exists in `saved` with as many rules as the payload appends. */
function chainsIntact(saved: ReadonlyMap<string, SavedTable>, payload: string): boolean {
  let table: SavedTable | undefined;
  const expected = new Map<SavedTable | undefined, Map<string, number>>();
  for (const line of payload.split('\n')) {
    if (line.startsWith('*')) table = saved.get(line.slice(1));
    else if (line.startsWith(':') || line.startsWith('-A ')) {
      const chain = line.startsWith(':') ? line.slice(1).split(' ')[0]! : line.split(' ')[1]!;
      const counts = expected.get(table) ?? new Map<string, number>();
      expected.set(table, counts);
      counts.set(chain, (counts.get(chain) ?? 0) + (line.startsWith('-A ') ? 1 : 0));
    }
  }
  for (const [t, counts] of expected) {
    if (!t) return false;
    for (const [chain, n] of counts) if (t.get(chain)?.rules.length !== n) return false;
  }
  return true;
}

/** The BackendFactory the daemon loads for `--proxy-mode=ipvs`. */
export const ipvsBackendFactory: BackendFactory = (options) => new IpvsBackend(options);
