// kubeproxy_conntrack_reconciler_sync_duration_seconds and _deleted_entries_total{ip_family}:
// upstream's conntrack reconciler is our stale-UDP cleanup, which each kernel backend runs at the
// end of its sync as `conntrack -D` commands (netfilter's deleteConntrackFlows). Those commands go
// through the runner the daemon hands to backends, so that runner times them and reads how many
// entries each deleted, per IP family (their `-f ipv4|ipv6`); when a family's sync ends, what its
// cleanup did is one reconcile: its total time observed once, its deletions added. A sync that
// deleted nothing runs no command and records nothing.

import type { Clock, CommandRunner, IPFamily } from '@kube-proxy-ts/core';
import { conntrackDeletedCount } from '@kube-proxy-ts/netfilter';
import type { DaemonMetrics } from './metrics.js';

/** The family of a `conntrack -D` command line, or undefined for anything else. */
function deletionFamily(command: string, args: readonly string[]): IPFamily | undefined {
  if (command !== 'conntrack' || args[0] !== '-D') return undefined;
  const f = args[args.indexOf('-f') + 1];
  return f === 'ipv6' ? 'IPv6' : f === 'ipv4' ? 'IPv4' : undefined;
}

export class ConntrackReconcilerMetrics {
  private readonly pending = new Map<IPFamily, { ms: number; deleted: number }>();

  constructor(
    private readonly metrics: Pick<DaemonMetrics, 'conntrackReconcilerDuration' | 'conntrackReconcilerDeleted'>,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  /** `inner`, with its conntrack deletions accounted to their family's current sync. */
  runner(inner: CommandRunner): CommandRunner {
    return {
      run: async (command, args, options) => {
        const family = deletionFamily(command, args);
        if (!family) return inner.run(command, args, options);
        const started = this.clock.now();
        let deleted = 0;
        try {
          const result = await inner.run(command, args, options);
          deleted = conntrackDeletedCount(result.stderr + result.stdout) ?? 0;
          return result;
        } finally {
          const p = this.pending.get(family) ?? { ms: 0, deleted: 0 };
          p.ms += this.clock.now() - started;
          p.deleted += deleted;
          this.pending.set(family, p);
        }
      },
    };
  }

  /** A sync of `family` returned: record its cleanup, if it ran one. */
  syncEnded(family: IPFamily): void {
    const p = this.pending.get(family);
    if (!p) return;
    this.pending.delete(family);
    const labels = { ip_family: family };
    this.metrics.conntrackReconcilerDuration.observe(labels, p.ms / 1000);
    this.metrics.conntrackReconcilerDeleted.inc(labels, p.deleted);
  }
}
