// The fixed part of the kube-proxy table, written on every full sync: the table, base chains
// and their jumps, helper chains with their rules, and the declarations of the shared sets and
// maps. Service-specific objects live in service-objects.ts.

import type { IPFamily } from '@kube-proxy-ts/core';
import {
  BASE_CHAINS,
  CLUSTER_IPS_CHECK_CHAIN,
  CLUSTER_IPS_SET,
  FIREWALL_CHECK_CHAIN,
  FIREWALL_IPS_MAP,
  HAIRPIN_CONNECTIONS_SET,
  HELPER_CHAINS,
  JUMPS,
  MASQUERADING_CHAIN,
  NODEPORT_ENDPOINTS_CHECK_CHAIN,
  NODEPORT_IPS_SET,
  OBSOLETE_BASE_CHAINS,
  OBSOLETE_SETS,
  NO_ENDPOINT_NODEPORTS_MAP,
  NO_ENDPOINT_SERVICES_MAP,
  REJECT_CHAIN,
  SERVICES_CHAIN,
  SERVICE_CONTAINERS,
  SERVICE_ENDPOINTS_CHECK_CHAIN,
  SERVICE_IPS_MAP,
  SERVICE_NODEPORTS_MAP,
  TABLE_COMMENT,
  addrType,
  nftFamily,
} from './layout.js';
import type { ContainerDeclaration, NftTransaction } from './transaction.js';
import type { ContainerSpec } from './layout.js';

export interface SetupOptions {
  readonly ipFamily: IPFamily;
  /** config.nftables.masqueradeBit */
  readonly masqueradeBit: number;
  /** config.nftables.masqueradeAll: every packet to a ClusterIP is masqueraded. */
  readonly masqueradeAll: boolean;
  /** Matches packets that do not come from this node's pods ('' when no detector is set): ClusterIP traffic from outside the cluster is masqueraded. */
  readonly ifNotLocal: string;
  /** null: NodePorts accepted on every local address; else only on these (nodeport-ips). */
  readonly nodePortIPs: readonly string[] | null;
  /** Service CIDRs of this family (ProxyState.serviceCIDRs): traffic to unallocated addresses in them is dropped. */
  readonly serviceCIDRs: readonly string[];
  /** Delete and re-create the base chains first, so changed priorities can apply (once per process). */
  readonly recreateBaseChains: boolean;
  /** Objects of an earlier layout found in the table, to delete (OBSOLETE_BASE_CHAINS, OBSOLETE_SETS). */
  readonly obsolete?: { readonly chains: readonly string[]; readonly sets: readonly string[] };
}

/** How a service set or map is declared; element additions repeat it word for word. */
export function containerDeclaration(c: ContainerSpec, ipFamily: IPFamily): ContainerDeclaration {
  return { kind: c.kind, type: c.type(ipFamily), comment: c.comment };
}

/** Upstream's `%#08x` of 1 << bit, e.g. 0x004000 for bit 14. */
export function masqueradeMark(bit: number): string {
  return `0x${(1 << bit >>> 0).toString(16).padStart(6, '0')}`;
}

/** What marks a packet to be masqueraded in postrouting (the masquerading chain), as upstream writes it. */
export function masqueradeRule(bit: number): string {
  return `mark set mark or ${masqueradeMark(bit)}`;
}

/** The rules of every helper chain, by chain, in order. */
export function helperChainRules(options: SetupOptions): Map<string, string[]> {
  const ipX = nftFamily(options.ipFamily);
  const mark = masqueradeMark(options.masqueradeBit);
  const noLocalhost = options.ipFamily === 'IPv6' ? 'ip6 daddr != ::1' : 'ip daddr != 127.0.0.0/8';
  const lookup = `${ipX} daddr . meta l4proto . th dport`;
  const rules = new Map<string, string[]>(HELPER_CHAINS.map((c) => [c, []]));
  const add = (chain: string, rule: string) => rules.get(chain)!.push(rule);

  add(MASQUERADING_CHAIN, `mark and ${mark} != 0 mark set mark xor ${mark} masquerade fully-random`);
  // After DNAT the destination is the endpoint: one that is also the source reached itself.
  add(MASQUERADING_CHAIN, `ct status dnat ${ipX} saddr . ${ipX} daddr . meta l4proto . th dport @${HAIRPIN_CONNECTIONS_SET} masquerade fully-random`);
  add(CLUSTER_IPS_CHECK_CHAIN, `${ipX} daddr @${CLUSTER_IPS_SET} reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  if (options.serviceCIDRs.length > 0) {
    add(CLUSTER_IPS_CHECK_CHAIN, `${ipX} daddr { ${options.serviceCIDRs.join(', ')} } drop comment "Drop traffic to unallocated ClusterIPs"`);
  }
  add(REJECT_CHAIN, 'reject');
  add(SERVICE_ENDPOINTS_CHECK_CHAIN, `${lookup} vmap @${NO_ENDPOINT_SERVICES_MAP}`);
  const nodePortMatch = options.nodePortIPs === null ? noLocalhost : `${ipX} daddr @${NODEPORT_IPS_SET}`;
  add(NODEPORT_ENDPOINTS_CHECK_CHAIN, `${nodePortMatch} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS_MAP}`);
  add(FIREWALL_CHECK_CHAIN, `${lookup} vmap @${FIREWALL_IPS_MAP}`);
  // Off-cluster traffic to a ClusterIP may be bridged to another node: masquerade it.
  if (options.masqueradeAll) add(SERVICES_CHAIN, `${ipX} daddr @${CLUSTER_IPS_SET} ${masqueradeRule(options.masqueradeBit)} comment "masquerade all clusterIP traffic"`);
  else if (options.ifNotLocal) add(SERVICES_CHAIN, `${ipX} daddr @${CLUSTER_IPS_SET} ${options.ifNotLocal} ${masqueradeRule(options.masqueradeBit)} comment "masquerade clusterIP traffic from outside cluster"`);
  add(SERVICES_CHAIN, `${lookup} vmap @${SERVICE_IPS_MAP}`);
  const nodePortDispatch = options.nodePortIPs === null ? `fib daddr type local ${noLocalhost}` : `${ipX} daddr @${NODEPORT_IPS_SET}`;
  add(SERVICES_CHAIN, `${nodePortDispatch} meta l4proto . th dport vmap @${SERVICE_NODEPORTS_MAP}`);
  return rules;
}

/** The rules of every base chain: the jumps to the helper chains. */
export function baseChainRules(): Map<string, string[]> {
  const rules = new Map<string, string[]>(BASE_CHAINS.map((c) => [c.name, []]));
  for (const j of JUMPS) rules.get(j.from)!.push(j.match ? `${j.match} jump ${j.to}` : `jump ${j.to}`);
  return rules;
}

/**
 * Writes the fixed part. Sets and maps are declared (an identical `add` is a no-op) but not
 * flushed: their elements are handled with the service objects.
 */
export function writeSetup(tx: NftTransaction, options: SetupOptions): void {
  tx.addTable(TABLE_COMMENT);
  if (options.recreateBaseChains) {
    for (const bc of BASE_CHAINS) tx.addChain(bc.name).deleteChain(bc.name);
  }
  for (const bc of BASE_CHAINS) tx.addChain(bc.name, bc).flushChain(bc.name);
  for (const chain of HELPER_CHAINS) {
    if (chain === REJECT_CHAIN) tx.addChain(chain, { comment: 'helper for @no-endpoint-services / @no-endpoint-nodeports' });
    else tx.addChain(chain);
    tx.flushChain(chain);
  }
  for (const c of SERVICE_CONTAINERS) {
    const d = containerDeclaration(c, options.ipFamily);
    tx.addContainer(d.kind, c.name, d.type, { comment: d.comment });
  }
  writeNodePortIPs(tx, options);
  for (const [chain, rules] of baseChainRules()) for (const rule of rules) tx.addRule(chain, rule);
  for (const [chain, rules] of helperChainRules(options)) for (const rule of rules) tx.addRule(chain, rule);
  // Last: the rules that referred to them were flushed above. Deleting a chain deletes its rules.
  for (const chain of options.obsolete?.chains ?? []) tx.deleteChain(chain);
  for (const set of options.obsolete?.sets ?? []) tx.deleteContainer('set', set);
}

/** The objects of an earlier layout among `existing` names of the table. */
export function obsoleteObjects(existing: { readonly chains: ReadonlySet<string>; readonly sets: ReadonlySet<string> }): NonNullable<SetupOptions['obsolete']> {
  return { chains: OBSOLETE_BASE_CHAINS.filter((c) => existing.chains.has(c)), sets: OBSOLETE_SETS.filter((s) => existing.sets.has(s)) };
}

/** Rewrites cluster-ips-check alone, atomically: what a change of the Service CIDRs needs. */
export function writeClusterIPsCheck(tx: NftTransaction, options: SetupOptions): void {
  // The block form loads no set into nft's cache: declaring @cluster-ips again (a no-op) lets the
  // reject rule name it without making nft read every chain.
  const d = containerDeclaration(SERVICE_CONTAINERS.find((c) => c.name === CLUSTER_IPS_SET)!, options.ipFamily);
  tx.addContainer(d.kind, CLUSTER_IPS_SET, d.type, { comment: d.comment });
  tx.flushChain(CLUSTER_IPS_CHECK_CHAIN).addChainRules(CLUSTER_IPS_CHECK_CHAIN, helperChainRules(options).get(CLUSTER_IPS_CHECK_CHAIN) ?? []);
}

/** The nodeport-ips set: absent when NodePorts are open on every local address, else exactly these. */
export function writeNodePortIPs(tx: NftTransaction, options: SetupOptions): void {
  tx.addContainer('set', NODEPORT_IPS_SET, addrType(options.ipFamily), { comment: 'IPs that accept NodePort traffic' });
  if (options.nodePortIPs === null) {
    tx.deleteContainer('set', NODEPORT_IPS_SET);
  } else {
    tx.flushContainer('set', NODEPORT_IPS_SET);
    tx.addElements(NODEPORT_IPS_SET, options.nodePortIPs.map((ip) => [ip, { value: '' }] as const));
  }
}
