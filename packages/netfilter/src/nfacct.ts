// Extended accounting objects (nfnetlink_acct), read and created with the `nfacct` tool. Upstream's
// iptables mode counts two kinds of packets in named nfacct objects, which iptables rules feed
// with `-m nfacct --nfacct-name <name>`, and exports them as counters. Objects live per network
// namespace; a kernel without CONFIG_NETFILTER_NETLINK_ACCT, or a node without the tool, has none.

import type { CommandRunner, Logger } from '@kube-proxy-ts/core';

/** Packets the KUBE-FORWARD `--ctstate INVALID` rule dropped. */
export const NFACCT_CT_STATE_INVALID_DROPPED = 'ct_state_invalid_dropped_pkts';
/** Packets accepted on node ports of 127.0.0.0/8 (localhost node ports). */
export const NFACCT_LOCALHOST_NODEPORTS_ACCEPTED = 'localhost_nps_accepted_pkts';

export interface NFAcctCounter {
  readonly name: string;
  readonly packets: number;
  readonly bytes: number;
}

const NFACCT_TIMEOUT_MS = 2_000;
// `{ pkts = 00000000000000000042, bytes = 00000000000000004711 } = name;`
const LINE = /^\{\s*pkts\s*=\s*(\d+),\s*bytes\s*=\s*(\d+)\s*\}\s*=\s*([^;\s]+);$/;

/** The objects in `nfacct list` / `nfacct get` output; lines of another shape are ignored. */
export function parseNFAcctList(text: string): NFAcctCounter[] {
  const out: NFAcctCounter[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (m) out.push({ name: m[3]!, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/**
 * All nfacct objects of this network namespace; undefined when nfacct accounting cannot be used
 * here (tool not installed, kernel without nfnetlink_acct, no permission).
 */
export async function listNFAcctCounters(runner: CommandRunner, logger?: Pick<Logger, 'debug'>): Promise<NFAcctCounter[] | undefined> {
  try {
    const r = await runner.run('nfacct', ['list'], { timeoutMs: NFACCT_TIMEOUT_MS });
    if (r.code === 0) return parseNFAcctList(r.stdout);
    logger?.debug({ code: r.code, stderr: r.stderr.trim() }, 'nfacct list failed');
  } catch (err) {
    logger?.debug({ err: String(err) }, 'nfacct could not run');
  }
  return undefined;
}

/** One object's counters; undefined when it does not exist or cannot be read. */
export async function getNFAcctCounter(runner: CommandRunner, name: string): Promise<NFAcctCounter | undefined> {
  try {
    const r = await runner.run('nfacct', ['get', name], { timeoutMs: NFACCT_TIMEOUT_MS });
    if (r.code !== 0) return undefined;
    return parseNFAcctList(r.stdout).find((c) => c.name === name);
  } catch {
    return undefined;
  }
}

/**
 * Creates the objects of `names` that do not exist yet (as upstream's nfacct Ensure), keeping the
 * counts of those that do. Resolves with the names that exist afterwards: none where nfacct is
 * not supported.
 */
export async function ensureNFAcctCounters(runner: CommandRunner, names: readonly string[], logger?: Pick<Logger, 'debug' | 'warn'>): Promise<Set<string>> {
  const existing = await listNFAcctCounters(runner, logger);
  if (!existing) return new Set();
  const present = new Set(existing.map((c) => c.name).filter((n) => names.includes(n)));
  for (const name of names) {
    if (present.has(name)) continue;
    try {
      const r = await runner.run('nfacct', ['add', name], { timeoutMs: NFACCT_TIMEOUT_MS });
      if (r.code === 0) present.add(name);
      else logger?.warn({ name, stderr: r.stderr.trim() }, 'cannot create nfacct counter');
    } catch (err) {
      logger?.warn({ name, err: String(err) }, 'cannot create nfacct counter');
    }
  }
  return present;
}
