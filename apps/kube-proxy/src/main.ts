// The kube-proxy process: parse flags and configuration, then either answer and exit (--help,
// --version, --write-config-to, --cleanup, --init-only) or run the proxy until SIGTERM/SIGINT.

import { readlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { ProxyStateTracker, RefusedObjects, realClock, type ProxyEventHandler } from '@kube-proxy-ts/core';
import { createExecRunner } from '@kube-proxy-ts/netfilter';
import { FlagError, usage } from './cli/flags.js';
import { runInitOnly } from './cli/init-only.js';
import { resolveOptions, type Options } from './cli/options.js';
import { ConfigError } from './config/field-error.js';
import { encodeKubeProxyConfiguration } from './config/v1alpha1.js';
import { watchConfigFile } from './config/watch.js';
import { BackendLoadError, loadBackendFactory } from './daemon/backend-loader.js';
import { cleanupAll } from './daemon/cleanup.js';
import { applyConntrackSettings } from './daemon/conntrack.js';
import { Daemon, StartupError, type RunningSource } from './daemon/daemon.js';
import { createRegistry } from './daemon/metrics.js';
import { missingRequirements } from './daemon/requirements.js';
import { createLogger, levelForVerbosity, type PinoLogger } from './log/logger.js';
import { versionText } from './version.js';
import { runSubcommand, SUBCOMMANDS } from './inspect/command.js';

export interface MainIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Registers signal handlers; tests pass a no-op. */
  readonly onSignal?: (signal: NodeJS.Signals, fn: () => void) => void;
  /** Called once the daemon's initial lists are in, before its first sync. */
  readonly onSourcesSynced?: () => void;
  /** Called once every family's first sync has succeeded. */
  readonly onFirstSync?: () => void;
}

const processIO: MainIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  onSignal: (s, fn) => process.on(s, fn),
  onSourcesSynced: keepHeapNearLiveObjects,
  onFirstSync: collectGarbage,
};

/**
 * From now on V8 lets the heap grow 10% past what survived a collection instead of up to 4x: a
 * sync at 10k Services leaves tens of MiB of garbage that V8 would keep mapped until the process
 * has been idle a while. Not from the start: while the lists are read the live objects grow
 * fast, and collecting at every 10% of growth cost about a second at 10k Services. The one
 * collection here (the executable exposes gc) sizes the heap to what the lists left alive, so
 * that the first sync starts from there (bench/README.md, "daemon").
 */
function keepHeapNearLiveObjects(): void {
  setFlagsFromString('--heap-growing-percent=10');
  if (hasMemorySaverMode()) setFlagsFromString('--memory-saver-mode');
  collectGarbage();
}

/** One full collection, where the executable exposes gc: after the lists, and after the first sync's payloads. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * V8 13 (Node 24) keeps the garbage of a sync in a heap that the growth cap alone does not
 * shrink (10k Services: 108 MiB used at steady state, 76 MiB with this mode); older V8s do
 * not know the flag.
 */
function hasMemorySaverMode(): boolean {
  return Number(process.versions.v8.split('.')[0]) >= 13;
}

/** Runs the command line; resolves with the process exit code. */
export async function main(argv: readonly string[], io: MainIO = processIO): Promise<number> {
  if ((SUBCOMMANDS as readonly string[]).includes(argv[0] ?? '')) return runSubcommand(argv, io);
  let options: Options;
  try {
    options = resolveOptions(argv);
  } catch (err) {
    if (err instanceof FlagError || err instanceof ConfigError) {
      io.stderr(`Error: ${err.message}\n`);
      if (err instanceof FlagError) io.stderr('Run "kube-proxy --help" for the list of flags.\n');
      return 1;
    }
    throw err;
  }
  if (options.help) {
    io.stdout(`${usage()}\n`);
    return 0;
  }
  if (options.version !== undefined) {
    io.stdout(`${versionText(options.version)}\n`);
    return 0;
  }
  if (options.writeConfigTo) {
    try {
      writeFileSync(options.writeConfigTo, encodeKubeProxyConfiguration(options.config));
    } catch (err) {
      io.stderr(`Error: cannot write the configuration to ${options.writeConfigTo}: ${(err as Error).message}\n`);
      return 1;
    }
    io.stdout(`Wrote configuration to: ${options.writeConfigTo}\n`);
    return 0;
  }

  const config = options.config;
  const logger = createLogger({ format: config.logging.format, level: options.logLevel ?? levelForVerbosity(config.logging.verbosity) });
  for (const w of options.warnings) logger.warn(w);
  const nodeName = (config.hostnameOverride || hostname()).toLowerCase();
  const runner = createExecRunner();
  const registry = createRegistry();
  const loadFactory = (mode: string) => loadBackendFactory(mode);

  if (options.cleanup) {
    const failures = await cleanupAll({
      config,
      nodeName,
      logger,
      registry,
      runner,
      clock: realClock,
      loadFactory,
      applicable: async (backend) => (await missingRequirements(backend, { runner })).length === 0,
    });
    if (failures.length > 0) {
      logger.error({ failures }, 'Cleanup failed');
      return 1;
    }
    logger.info('Cleanup complete');
    return 0;
  }

  // An unknown or broken mode is the user's to fix: say so before the node is touched or the
  // API server is asked for anything.
  const factory = await loadFactory(config.mode).catch((err: unknown) => {
    if (!(err instanceof BackendLoadError)) throw err;
    logger.fatal(err.message);
    io.stderr(`Error: ${err.message}\n`);
    return undefined;
  });
  if (!factory) return 1;

  if (options.initOnly) {
    const backend = factory({ ipFamily: 'IPv4', config });
    const problems = await runInitOnly(config, { runner, logger, backend, cpus: availableParallelism(), inHostNetworkNamespace: inHostNetworkNamespace() });
    for (const p of problems) logger.error(p);
    return problems.length > 0 ? 1 : 0;
  }

  applyOOMScoreAdj(config.oomScoreAdj, logger);
  await applyConntrackSettings(config.conntrack, {
    runner,
    logger: logger.child({ component: 'conntrack' }),
    cpus: availableParallelism(),
    inHostNetworkNamespace: inHostNetworkNamespace(),
  });
  return runDaemon(options, logger, io, { nodeName, runner, registry, loadFactory: async () => factory });
}

// Upstream lowers its OOM score so the kernel kills workloads before the node's proxy.
function applyOOMScoreAdj(value: number | null, logger: PinoLogger): void {
  if (value === null) return;
  try {
    writeFileSync('/proc/self/oom_score_adj', String(value));
  } catch (err) {
    logger.warn({ err: (err as Error).message, oomScoreAdj: value }, 'Failed to apply oomScoreAdj');
  }
}

// nf_conntrack_max and the hash size are global: only a proxy in the host's namespace (as a
// hostNetwork DaemonSet is) may change them.
function inHostNetworkNamespace(): boolean {
  try {
    return readlinkSync('/proc/self/ns/net') === readlinkSync('/proc/1/ns/net');
  } catch {
    return false;
  }
}

async function runDaemon(
  options: Options,
  logger: PinoLogger,
  io: MainIO,
  deps: Pick<ConstructorParameters<typeof Daemon>[0], 'nodeName' | 'runner' | 'registry' | 'loadFactory'>,
): Promise<number> {
  const config = options.config;
  let exitCode = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  // One record for both families' trackers: an object refused for its names is reported once.
  const refused = new RefusedObjects();
  const daemon = new Daemon({
    ...deps,
    config,
    logger,
    createTracker: (ipFamily, nodeName) => new ProxyStateTracker({ ipFamily, nodeName, clock: realClock, logger: logger.child({ component: 'tracker', ipFamily }), refused }),
    startSource: (handler) => startSource(options, handler, logger, deps),
    checkRequirements: (backend) => missingRequirements(backend, { runner: deps.runner }),
    ...(io.onSourcesSynced ? { onSourcesSynced: io.onSourcesSynced } : {}),
    ...(io.onFirstSync ? { onFirstSync: io.onFirstSync } : {}),
  });

  let stopping = false;
  const shutdown = (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    logger.info({ reason: why }, 'Shutting down (rules are left in place)');
    daemon.stop().then(resolveDone, (err: Error) => {
      logger.error({ err }, 'error while stopping');
      resolveDone();
    });
  };
  io.onSignal?.('SIGTERM', () => shutdown('SIGTERM', 0));
  io.onSignal?.('SIGINT', () => shutdown('SIGINT', 0));
  const watch = options.configFile ? watchConfigFile(options.configFile, (why) => shutdown(why, 1)) : undefined;

  try {
    // A signal during start-up (still waiting for the sources) ends the process too.
    await Promise.race([daemon.start(), done]);
  } catch (err) {
    const known = err instanceof StartupError || err instanceof BackendLoadError;
    logger.fatal({ err: known ? undefined : err }, known ? (err as Error).message : 'start-up failed');
    if (known) io.stderr(`Error: ${(err as Error).message}\n`);
    watch?.close();
    await daemon.stop();
    return 1;
  }
  await done;
  watch?.close();
  return exitCode;
}

async function startSource(
  options: Options,
  handler: ProxyEventHandler,
  logger: PinoLogger,
  deps: { nodeName: string; registry: ConstructorParameters<typeof Daemon>[0]['registry'] },
): Promise<RunningSource> {
  const sources = await import('./sources/index.js');
  if (options.manifests) {
    return sources.startManifestSource({ path: options.manifests, handler, logger, nodeName: deps.nodeName });
  }
  let cluster: ReturnType<typeof sources.loadClusterAccess>;
  try {
    cluster = sources.loadClusterAccess(options.config.clientConnection.kubeconfig || undefined, options.master);
  } catch (err) {
    // A missing or unreadable kubeconfig, or no cluster to fall back to: the user's to fix, so say it plainly.
    throw new StartupError(`cannot create the Kubernetes client: ${(err as Error).message}`);
  }
  const { qps, burst } = options.config.clientConnection;
  return sources.startKubernetesSource({ cluster, nodeName: deps.nodeName, handler, logger, metrics: deps.registry, clientConnection: { qps, burst }, resyncPeriodMs: options.config.configSyncPeriod });
}
