// --cleanup: every built-in mode removes what it may have left behind, for both IP families, as
// upstream's CleanupAndExit does, so switching modes (or uninstalling) leaves a clean node.

import type { Backend, BackendFactory, Clock, CommandRunner, Logger, ProxyConfig } from '@kube-proxy-ts/core';
import { emptyNodeInfo } from '@kube-proxy-ts/core';
import type { Registry } from 'prom-client';
import { BUILTIN_BACKENDS } from './backend-loader.js';

export interface CleanupOptions {
  readonly config: ProxyConfig;
  readonly nodeName: string;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly runner: CommandRunner;
  readonly clock: Clock;
  readonly loadFactory: (mode: string) => Promise<BackendFactory>;
  /** Whether a backend can have left anything here (its tools / kernel support exist). */
  readonly applicable?: (backend: Backend) => Promise<boolean>;
  readonly modes?: readonly string[];
}

/** Returns the failures (empty when everything was clean or cleaned). */
export async function cleanupAll(opts: CleanupOptions): Promise<string[]> {
  const failures: string[] = [];
  for (const mode of opts.modes ?? Object.keys(BUILTIN_BACKENDS)) {
    let factory: BackendFactory;
    try {
      factory = await opts.loadFactory(mode);
    } catch (err) {
      failures.push(`${mode}: ${(err as Error).message}`);
      continue;
    }
    for (const family of ['IPv4', 'IPv6'] as const) {
      const log = opts.logger.child({ component: 'cleanup', mode });
      try {
        const backend = factory({ ipFamily: family, config: { ...opts.config, mode } });
        if (opts.applicable && !(await opts.applicable(backend))) {
          opts.logger.info({ mode, ipFamily: family }, 'Nothing to clean up: the mode cannot run on this machine');
          continue;
        }
        // Never started: cleaning a node only removes, and start() or a first sync may set it up.
        await backend.cleanup({ logger: log, metrics: opts.registry, node: emptyNodeInfo(opts.nodeName), runner: opts.runner, clock: opts.clock });
        log.info({ ipFamily: family }, 'Cleaned up');
      } catch (err) {
        failures.push(`${mode} (${family}): ${(err as Error).message}`);
        log.error({ err, ipFamily: family }, 'Cleanup failed');
      }
    }
  }
  return failures;
}
