// What a kube-proxy table already holds, for the first sync of a process (or after a failed
// sync): only the names of chains, sets and maps, from `nft -t -j list chains|sets|maps <family>`.
// nft 1.0.6 reads the whole ruleset (every rule and element) before `list tables` or a `list sets`
// without --terse, which takes seconds at 10k services; these listings read names only.

import type { CommandRunner } from '@kube-proxy-ts/core';
import type { NftFamily } from './layout.js';

export interface ExistingObjects {
  /** False when the table holds no chain and no set (or does not exist). */
  readonly tableExists: boolean;
  readonly chains: ReadonlySet<string>;
  readonly sets: ReadonlySet<string>;
  /** Timeouts in seconds of the sets that have one (the affinity sets): an unchanged one is kept, with its clients. */
  readonly setTimeouts: ReadonlyMap<string, number>;
  readonly maps: ReadonlySet<string>;
}

interface NftJsonListing {
  nftables?: Array<{ chain?: { table?: string; name?: string }; set?: { table?: string; name?: string; timeout?: number }; map?: { table?: string; name?: string } }>;
}

/** Names of the chains, sets and maps of `table`. */
export async function listExistingObjects(
  runner: CommandRunner,
  family: NftFamily,
  table: string,
  timeoutMs: number,
): Promise<ExistingObjects> {
  const chains = new Set<string>();
  const sets = new Set<string>();
  const setTimeouts = new Map<string, number>();
  const maps = new Set<string>();
  for (const what of ['chains', 'sets', 'maps'] as const) {
    const r = await runner.run('nft', ['-t', '-j', 'list', what, family], { timeoutMs });
    if (r.code !== 0) throw new Error(`nft list ${what} ${family}: ${r.stderr.trim() || `exit ${r.code}`}`);
    for (const o of parseListing(r.stdout) as NftJsonListing['nftables'] & object) {
      if (o.chain?.table === table && o.chain.name) chains.add(o.chain.name);
      if (o.set?.table === table && o.set.name) sets.add(o.set.name);
      if (o.set?.table === table && o.set.name && typeof o.set.timeout === 'number') setTimeouts.set(o.set.name, o.set.timeout);
      if (o.map?.table === table && o.map.name) maps.add(o.map.name);
    }
  }
  return { tableExists: chains.size > 0 || sets.size > 0 || maps.size > 0, chains, sets, setTimeouts, maps };
}

function parseListing(stdout: string): unknown[] {
  if (stdout.trim() === '') return [];
  const parsed = JSON.parse(stdout) as NftJsonListing;
  return Array.isArray(parsed.nftables) ? parsed.nftables : [];
}
