// The userspace backend: a TCP or UDP listener in this process per service port, and nat rules
// (KUBE-PORTALS-*, KUBE-NODEPORT-*) that steer service traffic to the listener's port. All rules
// are rewritten with one iptables-restore --noflush per sync; listeners are reconciled in place
// so that established connections survive endpoint changes.

import { isIP } from 'node:net';
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
  SyncResult,
} from '@kube-proxy-ts/core';
import {
  deleteJumps,
  describeRestoreFailure,
  detectIptablesFlavour,
  ensureJumps,
  iptablesCommands,
  iptablesRequirements,
  resolveNodePortAddresses,
  runIptablesRestore,
  type IptablesCommands,
  type IptablesFlavour,
} from '@kube-proxy-ts/netfilter';
import { AffinityPool, RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';
import { connectionLimits, raiseFileLimit, readFileLimit, withLimits, type ConnectionLimits } from './fd-limit.js';
import { PORTAL_CHAINS, PORTAL_JUMPS } from './layout.js';
import { ConnectionBudget, ListenerBudget } from './limits.js';
import type { ServiceListener } from './listener.js';
import { ListenerMetrics } from './metrics.js';
import { PortAllocator, parsePortRange } from './port-range.js';
import { cleanupPayload, portalRules, portalsPayload, type PortalRule, type PortalTarget } from './portals.js';
import { planListeners, type ListenerPlan } from './sync-plan.js';
import { userspaceExplain, userspaceKernelView, type RunningListener } from './kernel-view.js';
import { TcpServiceListener } from './tcp-listener.js';
import { UdpServiceListener } from './udp-listener.js';

/** Upper bound for one iptables call; the payloads here are small. */
const IPTABLES_TIMEOUT_MS = 30_000;
/** The kernel's nf_conntrack_tcp_timeout_established and _close_wait, for conntrack timeouts of 0. */
const KERNEL_TCP_ESTABLISHED_TIMEOUT_MS = 5 * 24 * 3600_000;
const KERNEL_TCP_CLOSE_WAIT_TIMEOUT_MS = 60_000;

export interface UserspaceBackendOptions extends BackendOptions {
  /** Per-attempt connect timeouts; default 250 ms, 500 ms, 1 s, 2 s. */
  readonly dialTimeouts?: readonly number[];
  /** Try to raise RLIMIT_NOFILE at start. Default true. */
  readonly raiseFileLimit?: boolean;
  /**
   * Bounds on connections, sessions and ClientIP pins. Unset ones are derived from RLIMIT_NOFILE
   * at start() and shared by every backend of the process that leaves all of them unset (both IP
   * families draw from the same descriptors); with any set, this backend has totals of its own.
   */
  readonly limits?: Partial<ConnectionLimits>;
  /** Which iptables writes the portal rules; default: detected as the iptables mode does. */
  readonly flavour?: IptablesFlavour | 'auto';
}

/** What the listeners of a backend draw from. */
interface Totals {
  readonly limits: ConnectionLimits;
  readonly tcp: ConnectionBudget;
  readonly udp: ConnectionBudget;
  readonly affinity: AffinityPool;
}

function createTotals(limits: ConnectionLimits): Totals {
  return {
    limits,
    tcp: new ConnectionBudget(limits.tcpConnections),
    udp: new ConnectionBudget(limits.udpSessions),
    affinity: new AffinityPool(limits.affinityClients),
  };
}

/** Descriptors belong to the process: backends with default limits share one set of totals. */
let processTotals: Totals | undefined;

interface ListenerEntry {
  plan: ListenerPlan;
  readonly listener: ServiceListener;
  readonly balancer: RoundRobinBalancer<BalancerEndpoint>;
  readonly metrics: ListenerMetrics;
  /** The port the listener holds (kept while it is paused, so rules keep refusing clients). */
  port: number;
}

/** The listen address for `bindAddress`: a specific address of this family, or every address. */
export function listenAddress(bindAddress: string, family: IPFamily): { host: string; listenIP: string | undefined } {
  const any = family === 'IPv6' ? '::' : '0.0.0.0';
  const version = isIP(bindAddress);
  const ofFamily = (family === 'IPv4' && version === 4) || (family === 'IPv6' && version === 6);
  if (!ofFamily || bindAddress === '0.0.0.0' || bindAddress === '::') return { host: any, listenIP: undefined };
  return { host: bindAddress, listenIP: bindAddress };
}

export class UserspaceBackend implements Backend {
  readonly name = 'userspace';
  readonly requirements: readonly Requirement[];
  private ctx: BackendContext | undefined;
  private commands: IptablesCommands | undefined;
  private readonly family: IPFamily;
  private readonly config: ProxyConfig;
  private readonly listeners = new Map<string, ListenerEntry>();
  private readonly ports: PortAllocator;
  private readonly loggedSkips = new Set<string>();
  private jumpsInstalled = false;
  private nodePrepared = false;
  private fileLimitChecked = false;
  private totals: Totals | undefined;
  /** The rules of the last sync, with stable placeholders instead of ports (for inspect()). */
  private lastRules: readonly PortalRule[] = [];

  constructor(private readonly options: UserspaceBackendOptions) {
    this.family = options.ipFamily;
    this.config = options.config;
    this.requirements = iptablesRequirements(options.ipFamily);
    // A malformed range is a configuration error; the app validates it before we get here.
    this.ports = new PortAllocator(parsePortRange(options.config.portRange));
  }

  /** The iptables binaries of the host's flavour, detected once (rules of the other are invisible to the operator). */
  private async iptablesCommands(ctx: BackendContext): Promise<IptablesCommands> {
    if (!this.commands) {
      const detected = await detectIptablesFlavour(ctx.runner, this.options.flavour ?? 'auto');
      this.commands = iptablesCommands(detected.flavour, this.family);
      ctx.logger.info({ flavour: detected.flavour, reason: detected.reason }, 'iptables flavour');
    }
    return this.commands;
  }

  private context(): BackendContext {
    if (!this.ctx) throw new Error('userspace backend: start() must be called first');
    return this.ctx;
  }

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    // A (re)start trusts nothing it remembers; the node is prepared by the first sync, so that a
    // backend started only to clean up (--cleanup) changes nothing.
    this.nodePrepared = false;
    // Bad limits are the operator's to fix: refuse them now rather than at the first sync.
    if (this.options.limits) withLimits(connectionLimits(readFileLimit()), this.options.limits);
  }

  /** What the first sync needs on the node: the open-file limit raised, our chains and their jumps. */
  private async prepareNode(): Promise<void> {
    const ctx = this.context();
    let fileLimit = undefined;
    if (this.options.raiseFileLimit !== false && !this.fileLimitChecked) {
      this.fileLimitChecked = true;
      fileLimit = await raiseFileLimit(ctx.runner, ctx.logger);
    }
    if (!this.totals) {
      const derived = () => connectionLimits(fileLimit ?? readFileLimit());
      if (this.options.limits) this.totals = createTotals(withLimits(derived(), this.options.limits));
      else this.totals = processTotals ??= createTotals(derived());
      ctx.logger.info({ ...this.totals.limits }, 'connection limits');
    }
    await this.ensureChainsAndJumps();
  }

  /** Creates our chains when missing (without flushing them) and the jumps into them. */
  private async ensureChainsAndJumps(): Promise<void> {
    const ctx = this.context();
    const { iptables } = await this.iptablesCommands(ctx);
    for (const chain of PORTAL_CHAINS) {
      const r = await ctx.runner.run(iptables, ['-w', '-t', 'nat', '-N', chain], { timeoutMs: IPTABLES_TIMEOUT_MS });
      if (r.code !== 0 && !/exists/i.test(r.stderr)) throw new Error(`creating chain ${chain}: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    await ensureJumps(ctx.runner, PORTAL_JUMPS, { iptables, timeoutMs: IPTABLES_TIMEOUT_MS });
    this.jumpsInstalled = true;
  }

  async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    void changes; // listeners are reconciled in place, so a full pass costs little
    try {
      const ctx = this.context();
      if (!this.nodePrepared) {
        await this.prepareNode();
        this.nodePrepared = true;
      }
      const plan = planListeners(state);
      for (const skip of plan.skipped) {
        if (this.loggedSkips.has(skip.key)) continue;
        this.loggedSkips.add(skip.key);
        ctx.logger.warn({ servicePort: skip.key }, `Skipping service port: ${skip.reason}`);
      }
      for (const key of this.loggedSkips) if (!state.services.has(key)) this.loggedSkips.delete(key);

      const wanted = new Set(plan.listeners.map((l) => l.id));
      for (const [id, entry] of this.listeners) if (!wanted.has(id)) this.removeListener(id, entry);
      // One listener that cannot bind must not keep the others (and their rules) from syncing.
      const failures: string[] = [];
      for (const lp of plan.listeners) {
        try {
          await this.reconcile(lp);
        } catch (err) {
          failures.push(`${lp.id}: ${err instanceof Error ? err.message : String(err)}`);
          ctx.logger.error({ servicePort: lp.id, err: String(err) }, 'Cannot open the listener of a service port');
        }
      }

      const target = this.portalTarget(state);
      const rules: PortalRule[] = [];
      const placeholders: PortalRule[] = [];
      for (const entry of this.listeners.values()) {
        for (const portal of entry.plan.portals) {
          rules.push(...portalRules(portal, { ...target, proxyPort: entry.port }));
          placeholders.push(...portalRules(portal, { ...target, proxyPort: `{${entry.plan.id}}` }));
        }
      }
      const payload = portalsPayload(rules);
      const { restore } = await this.iptablesCommands(ctx);
      const result = await runIptablesRestore(ctx.runner, restore, payload, { counters: false, timeoutMs: IPTABLES_TIMEOUT_MS });
      for (const entry of this.listeners.values()) {
        entry.listener.flushMetrics();
        // Expired ClientIP pins would otherwise pile up with every client ever seen.
        entry.balancer.pruneAffinity();
      }
      if (!result.ok) {
        return { ok: false, full: true, error: new Error(describeRestoreFailure(restore, result)) };
      }
      this.lastRules = placeholders;
      if (failures.length > 0) return { ok: false, full: true, error: new Error(`listeners failed: ${failures.join('; ')}`) };
      return {
        ok: true,
        full: true,
        stats: { listeners: this.listeners.size, rules: rules.length, skippedServicePorts: plan.skipped.length },
      };
    } catch (err) {
      return { ok: false, full: true, error: err instanceof Error ? err : new Error(String(err)) };
    }
  }

  private portalTarget(state: ProxyState): Omit<PortalTarget, 'proxyPort'> {
    const { listenIP } = listenAddress(this.config.bindAddress, this.family);
    const hostIP = state.node.addresses.find((a) => (isIP(a) === 6 ? 'IPv6' : 'IPv4') === this.family);
    const nodePorts = resolveNodePortAddresses(this.config.nodePortAddresses, this.family, hostIP);
    return { family: this.family, listenIP, hostIP, nodePortCIDRs: nodePorts.cidrs };
  }

  /** Creates the listener of `lp` or brings an existing one up to date. */
  private async reconcile(lp: ListenerPlan): Promise<void> {
    let entry = this.listeners.get(lp.id);
    if (!entry) {
      const created = this.createListener(lp);
      try {
        created.port = await this.bind(created.listener, undefined);
      } catch (err) {
        created.listener.close();
        created.metrics.remove();
        throw err;
      }
      entry = created;
      this.listeners.set(lp.id, entry);
    }
    entry.plan = lp;
    const before = new Set(entry.balancer.list().map((ep) => ep.hostPort));
    entry.balancer.setAffinityTimeout(lp.affinityTimeoutMs);
    entry.balancer.setEndpoints(lp.endpoints);
    for (const ep of lp.endpoints) before.delete(ep.hostPort);
    if (before.size > 0) entry.listener.endpointsRemoved(before);
    if (lp.endpoints.length === 0) {
      // Closed, so the kernel refuses clients (RST / ICMP port unreachable); the rules stay.
      entry.listener.pause();
    } else if (!entry.listener.serving) {
      const port = await this.bind(entry.listener, entry.port);
      if (port !== entry.port) {
        this.ports.release(entry.port);
        entry.port = port;
      }
    }
  }

  private createListener(lp: ListenerPlan): ListenerEntry {
    const ctx = this.context();
    const { host } = listenAddress(this.config.bindAddress, this.family);
    const logger = ctx.logger.child({ servicePort: lp.id, protocol: lp.protocol });
    const totals = this.totals;
    if (!totals) throw new Error('userspace backend: start() must be called first');
    const { limits } = totals;
    const balancer = new RoundRobinBalancer<BalancerEndpoint>({
      now: () => ctx.clock.now(),
      affinityLimit: limits.affinityClientsPerServicePort,
      affinityPool: totals.affinity,
    });
    const metrics = new ListenerMetrics(ctx.metrics, {
      servicePort: lp.scope === 'all' ? lp.servicePort.key : lp.id,
      protocol: lp.protocol,
      ipFamily: this.family,
    });
    const deps = { host, balancer, metrics, logger };
    const listener: ServiceListener =
      lp.protocol === 'TCP'
        ? new TcpServiceListener({
            ...deps,
            budget: new ListenerBudget(limits.tcpConnectionsPerServicePort, totals.tcp),
            // Idle relays end when the kernel backends' conntrack entries would (0: the kernel's own).
            idleTimeoutMs: this.config.conntrack.tcpEstablishedTimeout || KERNEL_TCP_ESTABLISHED_TIMEOUT_MS,
            halfClosedIdleTimeoutMs: this.config.conntrack.tcpCloseWaitTimeout || KERNEL_TCP_CLOSE_WAIT_TIMEOUT_MS,
            ...(this.options.dialTimeouts ? { dialTimeouts: this.options.dialTimeouts } : {}),
          })
        : new UdpServiceListener({
            ...deps,
            budget: new ListenerBudget(limits.udpSessionsPerServicePort, totals.udp),
            family: this.family,
            idleTimeoutMs: this.config.udpIdleTimeout,
            clock: ctx.clock,
          });
    return { plan: lp, listener, balancer, metrics, port: 0 };
  }

  /** Opens `listener` on `preferred` when still free, else on a port of the range (or an ephemeral one). */
  private async bind(listener: ServiceListener, preferred: number | undefined): Promise<number> {
    if (preferred !== undefined && preferred > 0) {
      try {
        return await listener.open(preferred);
      } catch (err) {
        if (!isPortTaken(err)) throw err;
      }
    }
    for (const candidate of this.ports.candidates()) {
      try {
        const port = await listener.open(candidate);
        this.ports.claim(port);
        return port;
      } catch (err) {
        if (!isPortTaken(err)) throw err;
      }
    }
    throw new Error(`no free port left in the proxy port range ${JSON.stringify(this.config.portRange)}`);
  }

  private removeListener(id: string, entry: ListenerEntry): void {
    entry.listener.close();
    entry.balancer.clearAffinity();
    entry.metrics.remove();
    this.ports.release(entry.port);
    this.listeners.delete(id);
  }

  async stop(): Promise<void> {
    for (const [id, entry] of [...this.listeners]) this.removeListener(id, entry);
  }

  /** The listeners as they run, for `kube-proxy inspect` and `explain`. */
  private running(): RunningListener[] {
    return [...this.listeners.values()].map((e) => ({ plan: e.plan, port: e.port, serving: e.listener.serving, activeConnections: e.listener.activeConnections }));
  }

  async kernelView(servicePorts: readonly ServicePort[]): Promise<KernelView> {
    return userspaceKernelView(this.running(), servicePorts, this.family);
  }

  async explain(packet: ExplainPacket, node: NodeInfo): Promise<Explanation> {
    return userspaceExplain(this.running(), packet, node.addresses, this.family);
  }

  async cleanup(cleanupCtx: BackendContext): Promise<void> {
    await this.stop();
    this.lastRules = [];
    // A never-started backend (kube-proxy --cleanup) works in the context it is given.
    const ctx = (this.ctx ??= cleanupCtx);
    const { iptables, restore } = await this.iptablesCommands(ctx);
    await deleteJumps(ctx.runner, PORTAL_JUMPS, { iptables, timeoutMs: IPTABLES_TIMEOUT_MS });
    const result = await runIptablesRestore(ctx.runner, restore, cleanupPayload(), { counters: false, timeoutMs: IPTABLES_TIMEOUT_MS });
    if (!result.ok) throw new Error(`removing the userspace proxy chains: ${result.stderr.trim()}`);
    this.jumpsInstalled = false;
  }

  async inspect(): Promise<unknown> {
    const chains: Record<string, string[]> = {};
    for (const chain of PORTAL_CHAINS) {
      chains[chain] = this.lastRules.filter((r) => r.chain === chain).map((r) => r.args.join(' ')).sort();
    }
    const listeners = [...this.listeners.values()]
      .map((e) => ({
        id: e.plan.id,
        protocol: e.plan.protocol,
        serving: e.listener.serving,
        endpoints: e.balancer.list().map((ep) => ep.hostPort),
        affinityTimeoutMs: e.plan.affinityTimeoutMs,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { jumps: this.jumpsInstalled, chains, listeners };
  }

  /** The port a listener holds, for tests and diagnostics: `id` is a service port key (or `key#internal` / `key#external`). */
  listenerPort(id: string): number | undefined {
    return this.listeners.get(id)?.port;
  }

  /** Open connections (TCP) or sessions (UDP) of one listener. */
  activeConnections(id: string): number | undefined {
    return this.listeners.get(id)?.listener.activeConnections;
  }
}

function isPortTaken(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EADDRINUSE' || code === 'EACCES';
}

/** The BackendFactory the daemon loads for `--proxy-mode=userspace`. */
export const userspaceBackendFactory: BackendFactory = (options) => new UserspaceBackend(options);
