// What a kube-proxy table already holds, for the first sync of a process (or after a failed
// sync): only the names of chains and sets, from `nft -j list chains|sets <family>`, which stays
// cheap where listing the whole table (with every rule) does not.

import type { CommandRunner } from '@kube-proxy-ts/core';
import type { NftFamily } from './layout.js';

export interface ExistingObjects {
  readonly tableExists: boolean;
  readonly chains: ReadonlySet<string>;
  readonly sets: ReadonlySet<string>;
}

interface NftJsonListing {
  nftables?: Array<{ chain?: { table?: string; name?: string }; set?: { table?: string; name?: string }; map?: unknown }>;
}

/** Names of the chains and sets (not maps) of `table`; empty when the table does not exist. */
export async function listExistingObjects(
  runner: CommandRunner,
  family: NftFamily,
  table: string,
  timeoutMs: number,
): Promise<ExistingObjects> {
  const tables = await runner.run('nft', ['-j', 'list', 'tables', family], { timeoutMs });
  if (tables.code !== 0) throw new Error(`nft list tables ${family}: ${tables.stderr.trim() || `exit ${tables.code}`}`);
  const exists = parseListing(tables.stdout).some((o) => (o as { table?: { name?: string } }).table?.name === table);
  if (!exists) return { tableExists: false, chains: new Set(), sets: new Set() };

  const chains = new Set<string>();
  const sets = new Set<string>();
  for (const what of ['chains', 'sets'] as const) {
    const r = await runner.run('nft', ['-j', 'list', what, family], { timeoutMs });
    if (r.code !== 0) throw new Error(`nft list ${what} ${family}: ${r.stderr.trim() || `exit ${r.code}`}`);
    for (const o of parseListing(r.stdout) as NftJsonListing['nftables'] & object) {
      if (o.chain?.table === table && o.chain.name) chains.add(o.chain.name);
      if (o.set?.table === table && o.set.name) sets.add(o.set.name);
    }
  }
  return { tableExists: true, chains, sets };
}

function parseListing(stdout: string): unknown[] {
  if (stdout.trim() === '') return [];
  const parsed = JSON.parse(stdout) as NftJsonListing;
  return Array.isArray(parsed.nftables) ? parsed.nftables : [];
}
