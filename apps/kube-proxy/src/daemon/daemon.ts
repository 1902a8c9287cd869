// The assembled proxy: health and metrics servers first (so probes answer during start-up), then
// the source; once Services, EndpointSlices and the Node are synced, one backend per IP family is
// started and its first sync runs. Nothing is flushed before that, so a restart keeps traffic flowing.

import type { Backend, BackendFactory, Clock, CommandRunner, IPFamily, ProxyConfig, ProxyEventHandler, ProxyState } from '@kube-proxy-ts/core';
import { emptyNodeInfo, nodeToNodeInfo, ProxyHealth, realClock } from '@kube-proxy-ts/core';
import type { V1Node } from '@kubernetes/client-node';
import { resolveNodePortAddresses } from '@kube-proxy-ts/netfilter';
import type { Registry } from 'prom-client';
import type { Logger } from '@kube-proxy-ts/core';
import { startHealthServer } from '../server/health-server.js';
import type { RunningServer } from '../server/listen.js';
import { debugHandler } from '../server/debug-handler.js';
import { startMetricsServer } from '../server/metrics-server.js';
import { ServiceHealthServer } from '../server/service-health.js';
import type { NodeEvent } from '../sources/node-events.js';
import { chooseFamilies } from './families.js';
import { FamilyProxier, type FamilyTracker } from './family-proxier.js';
import { EventFanout } from './fanout.js';
import { ConntrackReconcilerMetrics } from './conntrack-reconciler.js';
import { registerNFAcctMetrics } from './nfacct-metrics.js';
import { daemonMetrics } from './metrics.js';
import { serviceHealthView } from './service-health-sync.js';

/** A running source of Services, EndpointSlices and the Node. */
export interface RunningSource {
  /** Rejects when the source cannot start (for example, a manifest path that cannot be read). */
  readonly ready?: Promise<void>;
  stop(): Promise<void> | void;
  /** Events about this Node go to the API server, when the source is one. */
  readonly recordNodeEvent?: (event: NodeEvent) => void;
}

export interface DaemonOptions {
  readonly config: ProxyConfig;
  readonly nodeName: string;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly runner: CommandRunner;
  readonly clock?: Clock;
  readonly loadFactory: (mode: string) => Promise<BackendFactory>;
  readonly createTracker: (family: IPFamily, nodeName: string) => FamilyTracker;
  readonly startSource: (handler: ProxyEventHandler) => RunningSource | Promise<RunningSource>;
  /** Problems that keep a backend from running here (missing tools, kernel support). */
  readonly checkRequirements?: (backend: Backend) => Promise<string[]>;
  /** Forces the families instead of deriving them from the node and the configuration. */
  readonly families?: readonly IPFamily[];
  /** ms one sync may take before it counts as failed; default: SyncRunner's defaultSyncDeadline. */
  readonly syncDeadline?: number;
  /** Called once, when the initial lists are in and before any backend starts. */
  readonly onSourcesSynced?: () => void;
  /** Called once, when every family's first sync has succeeded. */
  readonly onFirstSync?: () => void;
}

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export class Daemon {
  readonly health: ProxyHealth;
  readonly proxiers = new Map<IPFamily, FamilyProxier>();
  private readonly backends: Backend[] = [];
  /** Each family's backend, for `kube-proxy inspect` and `explain`. */
  private readonly familyBackends = new Map<IPFamily, Backend>();
  private readonly servers: RunningServer[] = [];
  private readonly serviceHealth: ServiceHealthServer;
  private readonly states = new Map<IPFamily, ProxyState>();
  private readonly clock: Clock;
  private families: readonly IPFamily[] = ['IPv4'];
  private node: V1Node | undefined;
  private source: RunningSource | undefined;
  /** Servers that could not start, reported as Node events once the source can take them. */
  private readonly serverFailures: NodeEvent[] = [];
  private stopped = false;
  /** Bound addresses of the health and metrics servers, when they run. */
  healthzAddress: { host: string; port: number } | undefined;
  metricsAddress: { host: string; port: number } | undefined;

  constructor(private readonly opts: DaemonOptions) {
    this.clock = opts.clock ?? realClock;
    // Upstream's health timeout: two sync periods without applying a queued update.
    this.health = new ProxyHealth({ healthTimeout: 2 * opts.config.syncPeriod, clock: this.clock });
    this.serviceHealth = new ServiceHealthServer({
      hosts: () => this.healthCheckHosts(),
      proxyHealthy: () => this.health.isHealthy(),
      logger: opts.logger.child({ component: 'service-health' }),
    });
  }

  /** Resolves once every family's backend has started and its first sync was requested. */
  async start(): Promise<void> {
    const { config, logger, registry } = this.opts;
    await this.startServers();

    const trackers = new Map<IPFamily, FamilyTracker>();
    for (const f of ['IPv4', 'IPv6'] as const) trackers.set(f, this.opts.createTracker(f, this.opts.nodeName));
    const fanout = new EventFanout(trackers, this.health);
    this.source = await this.opts.startSource(fanout);
    for (const failure of this.serverFailures) this.source.recordNodeEvent?.(failure);
    logger.info({ nodeName: this.opts.nodeName }, 'Waiting for Services, EndpointSlices and the Node to sync');
    await this.source.ready?.catch((err: Error) => {
      throw new StartupError(`the source of Services, EndpointSlices and the Node failed: ${err.message}`);
    });
    await fanout.whenSynced();
    if (this.stopped) return;

    const families = this.opts.families ?? chooseFamilies(config, fanout.node);
    this.families = families;
    this.node = fanout.node;
    // A family the node does not have needs no tracking from now on.
    for (const f of [...trackers.keys()]) if (!families.includes(f)) trackers.delete(f);
    logger.info({ mode: config.mode, ipFamilies: families }, 'Sources synced; starting the proxy');
    this.opts.onSourcesSynced?.();
    const factory = await this.opts.loadFactory(config.mode);
    const metrics = daemonMetrics(registry);
    const conntrackReconciler = new ConntrackReconcilerMetrics(metrics, this.clock);
    const runner = conntrackReconciler.runner(this.opts.runner);
    // Upstream exports the nfacct packet counters in iptables mode only.
    if (config.mode === 'iptables') await registerNFAcctMetrics(registry, this.opts.runner, logger.child({ component: 'nfacct' }));

    for (const family of families) {
      const backend = factory({ ipFamily: family, config });
      const problems = (await this.opts.checkRequirements?.(backend)) ?? [];
      if (problems.length > 0) {
        throw new StartupError(`proxy mode ${config.mode} cannot run for ${family} on this machine:\n  ${problems.join('\n  ')}`);
      }
      const tracker = trackers.get(family) as FamilyTracker;
      // Built-in backends add their own ipFamily binding.
      const blog = logger.child({ component: 'backend', mode: config.mode });
      const node = fanout.node ? nodeToNodeInfo(fanout.node, family) : emptyNodeInfo(this.opts.nodeName);
      try {
        await backend.start({ logger: blog, metrics: registry, node, runner, clock: this.clock });
      } catch (err) {
        throw new StartupError(`failed to start the ${config.mode} backend for ${family}: ${(err as Error).message}`);
      }
      this.backends.push(backend);
      this.familyBackends.set(family, backend);
      const proxier = new FamilyProxier({
        family,
        tracker,
        backend,
        minSyncPeriod: config.minSyncPeriod,
        syncPeriod: config.syncPeriod,
        ...(this.opts.syncDeadline !== undefined ? { syncDeadline: this.opts.syncDeadline } : {}),
        clock: this.clock,
        logger: logger.child({ component: 'proxier', ipFamily: family }),
        metrics,
        health: this.health,
        onSynced: (state) => this.onFamilySynced(family, state),
        conntrackReconciler,
      });
      this.proxiers.set(family, proxier);
      fanout.listen(family, proxier);
    }
    if (this.stopped) return;
    // Upstream's "birth cry", just before its sync loop starts.
    this.source.recordNodeEvent?.({ type: 'Normal', reason: 'Starting', action: 'StartKubeProxy' });
    for (const p of this.proxiers.values()) p.start();
  }

  /** Stops serving and syncing. Rules stay in place (a restart must not drop traffic). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.source?.stop();
    await Promise.all([...this.proxiers.values()].map((p) => p.stop()));
    for (const b of this.backends) {
      try {
        await b.stop?.();
      } catch (err) {
        this.opts.logger.warn({ err }, 'backend stop failed');
      }
    }
    await this.serviceHealth.close();
    await Promise.all(this.servers.map((s) => s.close()));
  }

  private onFamilySynced(family: IPFamily, state: ProxyState): void {
    const first = !this.states.has(family);
    this.states.set(family, state);
    if (first && this.families.every((f) => this.states.has(f))) this.opts.onFirstSync?.();
    const view = serviceHealthView(this.states);
    this.serviceHealth.syncEndpoints(view.localEndpoints);
    void this.serviceHealth.syncServices(view.ports).then(() => this.serviceHealth.syncEndpoints(view.localEndpoints));
  }

  private healthCheckHosts(): string[] {
    return healthCheckHosts(this.opts.config, this.families, (family) => (this.node ? nodeToNodeInfo(this.node, family).addresses : []));
  }

  /** Ports served by the health-check node-port servers (for tests and logs). */
  serviceHealthPorts(): Map<string, number> {
    return this.serviceHealth.ports();
  }

  private async startServers(): Promise<void> {
    const { config, logger, registry } = this.opts;
    const bind = async (what: string, address: string, failureReason: string, start: () => Promise<RunningServer>) => {
      if (address === '') return undefined;
      try {
        const s = await start();
        this.servers.push(s);
        logger.info({ address: `${s.address.host}:${s.address.port}` }, `Serving ${what}`);
        return s.address;
      } catch (err) {
        // Upstream keeps running without the server unless bindAddressHardFail is set.
        if (config.bindAddressHardFail) throw new StartupError(`failed to serve ${what} on ${address}: ${(err as Error).message}`);
        logger.error({ err, address }, `Failed to serve ${what}; continuing without it`);
        this.serverFailures.push({ type: 'Warning', reason: failureReason, action: 'StartKubeProxy', note: (err as Error).message });
        return undefined;
      }
    };
    this.healthzAddress = await bind('healthz', config.healthzBindAddress, 'FailedToStartProxierHealthcheck', () => startHealthServer(config.healthzBindAddress, this.health, registry));
    this.metricsAddress = await bind('metrics', config.metricsBindAddress, 'FailedToStartMetricServer', () => startMetricsServer(config.metricsBindAddress, registry, config, this.debugHandler()));
  }

  private debugHandler() {
    return debugHandler({
      mode: this.opts.config.mode,
      targets: () => [...this.familyBackends].map(([ipFamily, backend]) => ({ ipFamily, backend, state: this.states.get(ipFamily) })),
    });
  }
}

/**
 * Where health-check node ports listen: the addresses NodePorts use in this mode (unset means
 * every address, one dual-stack socket when IPv6 is proxied, except in nftables mode, where it
 * means the primary addresses, as upstream), or the node's addresses inside nodePortAddresses.
 */
export function healthCheckHosts(
  config: Pick<ProxyConfig, 'nodePortAddresses' | 'mode'>,
  families: readonly IPFamily[],
  nodeAddresses: (family: IPFamily) => readonly string[],
): string[] {
  const { nodePortAddresses, mode } = config;
  const specs = nodePortAddresses.length === 0 && mode === 'nftables' ? ['primary'] : nodePortAddresses;
  if (specs.length === 0) return [families.includes('IPv6') ? '::' : '0.0.0.0'];
  const hosts: string[] = [];
  for (const family of families) {
    const addrs = nodeAddresses(family);
    hosts.push(...resolveNodePortAddresses(specs, family, addrs[0]).select(addrs));
  }
  return hosts;
}
