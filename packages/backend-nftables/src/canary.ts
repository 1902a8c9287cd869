// Upstream's nftables proxier keeps no canary: its partial syncs write only what changed, so a
// table deleted under it goes unnoticed until a change fails to apply. Ours writes nothing at all
// when nothing changed, so it looks for itself. `nft flush ruleset`, `nft delete table ip
// kube-proxy` and `nft flush table ip kube-proxy` (what a firewalld reload amounts to) all leave
// nat-prerouting without its jump to the services chain; listing that one base chain costs the
// same with 10 services as with 10k, where listing the table would print every rule.

import { driftCounter } from '@kube-proxy-ts/netfilter';
import type { BackendContext, IPFamily } from '@kube-proxy-ts/core';
import { JUMPS, SERVICES_CHAIN, TABLE, nftFamily } from './layout.js';

/** The base chain looked at, and the rule it must hold. */
const CANARY_JUMP = JUMPS.find((j) => j.from === 'nat-prerouting' && j.to === SERVICES_CHAIN)!;

export type TableStatus =
  | { readonly state: 'intact' }
  | { readonly state: 'deleted'; readonly reason: string }
  /** nft could not answer (not installed, a timeout): no conclusion either way. */
  | { readonly state: 'unknown'; readonly reason: string };

/** Whether the kube-proxy table of `ipFamily` still dispatches service traffic. */
export async function checkTable(ctx: Pick<BackendContext, 'runner'>, ipFamily: IPFamily, timeoutMs: number): Promise<TableStatus> {
  const args = ['list', 'chain', nftFamily(ipFamily), TABLE, CANARY_JUMP.from];
  let r;
  try {
    r = await ctx.runner.run('nft', args, { timeoutMs });
  } catch (err) {
    return { state: 'unknown', reason: `nft: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (r.code === 0) {
    return r.stdout.includes(`jump ${CANARY_JUMP.to}`) ? { state: 'intact' } : { state: 'deleted', reason: `${CANARY_JUMP.from} lost its jump to ${CANARY_JUMP.to}` };
  }
  // The kernel's ENOENT: the table, or the chain in it, is gone.
  if (/No such file or directory/.test(r.stderr)) return { state: 'deleted', reason: `table ${nftFamily(ipFamily)} ${TABLE} or its chain ${CANARY_JUMP.from} is missing` };
  return { state: 'unknown', reason: `nft ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}` };
}

/**
 * Checks the table during syncs, at most once per half syncPeriod: the sync runner starts a sync
 * at least once per syncPeriod (counted from the start of the previous one), so no periodic sync
 * goes by unchecked and a lost table is found within one syncPeriod.
 */
export class TableWatch {
  private lastCheck = -Infinity;

  constructor(
    private readonly ipFamily: IPFamily,
    private readonly syncPeriodMs: number,
    private readonly timeoutMs: number,
  ) {}

  /**
   * True when the table was found deleted or flushed (logged once and counted): what the backend
   * remembers having written is then void. A full sync about to rewrite the table counts as a check.
   */
  async lost(ctx: BackendContext, fullSyncAhead: boolean): Promise<boolean> {
    const now = ctx.clock.now();
    if (fullSyncAhead) {
      this.lastCheck = now;
      return false;
    }
    if (now - this.lastCheck < this.syncPeriodMs / 2) return false;
    this.lastCheck = now;
    const status = await checkTable(ctx, this.ipFamily, this.timeoutMs);
    if (status.state === 'unknown') {
      ctx.logger.warn({ ipFamily: this.ipFamily, reason: status.reason }, 'could not check the nftables kube-proxy table');
      return false;
    }
    if (status.state === 'intact') return false;
    ctx.logger.warn({ ipFamily: this.ipFamily, reason: status.reason }, 'nftables kube-proxy table deleted or flushed; resyncing');
    driftCounter(ctx.metrics).inc({ ip_family: this.ipFamily });
    return true;
  }
}
