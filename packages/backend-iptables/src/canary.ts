// KUBE-PROXY-CANARY, as upstream keeps it: an empty chain of ours in mangle, nat and filter that
// nothing jumps to. It disappears when someone flushes and deletes a table's chains
// (`iptables -t nat -F; iptables -t nat -X`, a firewalld reload, `nft flush ruleset`), which
// tells us that rules we believe written are gone: a full resync must rewrite them, the jumps
// from the built-in chains and the canaries included. Upstream polls mangle alone and then waits
// for the others; we list all three, so that a single table's flush is caught as well.

import type { CommandRunner } from '@kube-proxy-ts/core';
import type { IptablesTable } from '@kube-proxy-ts/netfilter';
import { KUBE_PROXY_CANARY } from './layout.js';

/** The tables holding a canary; full syncs (re)create it in each. */
export const CANARY_TABLES: readonly IptablesTable[] = ['mangle', 'nat', 'filter'];

/** The exit code of iptables for a chain that does not exist (legacy and nft flavours alike). */
const NO_SUCH_CHAIN = 1;

export type CanaryStatus =
  | { readonly state: 'present' }
  | { readonly state: 'deleted'; readonly tables: readonly IptablesTable[] }
  /** iptables could not answer (the xtables lock, a timeout): no conclusion either way. */
  | { readonly state: 'unknown'; readonly reason: string };

/** Lists KUBE-PROXY-CANARY in each table (`-S CHAIN`, which prints only that chain). */
export async function checkCanaries(runner: CommandRunner, iptables: string, timeoutMs: number): Promise<CanaryStatus> {
  const deleted: IptablesTable[] = [];
  for (const table of CANARY_TABLES) {
    let code: number;
    let stderr: string;
    try {
      ({ code, stderr } = await runner.run(iptables, ['-w', '-t', table, '-S', KUBE_PROXY_CANARY], { timeoutMs }));
    } catch (err) {
      return { state: 'unknown', reason: `${iptables}: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (code === NO_SUCH_CHAIN) deleted.push(table);
    else if (code !== 0) return { state: 'unknown', reason: `${iptables} -t ${table} -S ${KUBE_PROXY_CANARY} exited ${code}: ${stderr.trim()}` };
  }
  return deleted.length > 0 ? { state: 'deleted', tables: deleted } : { state: 'present' };
}

/**
 * How long after a check (or the canaries' creation) the next one is due. The sync runner starts
 * a sync at least once per syncPeriod, counted from the start of the previous one; half a period
 * never lets a periodic sync go by unchecked, so a deleted canary is found within one syncPeriod,
 * while a burst of partial syncs lists the chains at most twice per period.
 */
export function canaryCheckInterval(syncPeriodMs: number): number {
  return syncPeriodMs / 2;
}
