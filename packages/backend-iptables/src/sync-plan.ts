// From a rule set and what we know the kernel holds to the iptables-restore transactions of one
// sync. Pure. What keeps syncs fast on iptables-nft:
//  - a large sync writes the per-service chains in bounded transactions first, then the
//    top-level chains that reference them in a last one, so no half-built chain is ever in use
//    and no single kernel transaction runs for long;
//  - top-level chains we know the kernel holds are not rewritten when a few rules changed: the
//    changed rules are deleted and inserted one by one (their order does not matter);
//  - statements come in the order iptables-nft-restore (1.8.x) handles cheaply: it keeps the
//    chains a transaction names in a sorted linked list, scanned from the smallest name at
//    every statement, so a statement costs the number of smaller names seen before it. Chains
//    are written target first (KUBE-SEP before the KUBE-SVC/SVL that jump to them, then
//    KUBE-EXT, then KUBE-FW), each kind by descending name, and the order-free top-level rules
//    by descending jump target. Written in service order, a 10k-service full sync spent about
//    3.5 s more in the tool (bench/README.md).

import type { ServicePortKey } from '@kube-proxy-ts/core';
import {
  ENDPOINT_CHAIN_PREFIX,
  formatRestoreLine,
  jumpRuleArgs,
  ruleLineCount,
  ruleLines,
  RestoreTableWriter,
  SERVICE_EXTERNAL_CHAIN_PREFIX,
  SERVICE_FIREWALL_CHAIN_PREFIX,
  type JumpRule,
} from '@kube-proxy-ts/netfilter';
import { KUBE_MARK_MASQ, KUBE_NODEPORTS, KUBE_PROXY_CANARY, KUBE_SERVICES } from './layout.js';
import type { RuleSet, ServicePortRules } from './rules.js';

/** What we wrote and the kernel accepted: our chains and their rules, in kernel order. */
export interface KernelModel {
  readonly filter: ReadonlyMap<string, readonly string[]>;
  readonly nat: ReadonlyMap<string, readonly string[]>;
  /**
   * Per-service nat chains (KUBE-SVC/SVL/EXT/FW/SEP), each with the rules of the service port that
   * wrote it (its `chains` has the chain's rules). Updated in place by commitPlan(), so a partial
   * sync costs what changed, not what exists.
   */
  readonly serviceChains: Map<string, ServicePortRules>;
  /** Rules in serviceChains. */
  readonly serviceRuleCount: number;
}

export interface IptablesPlanLimits {
  /** Most payload lines of per-service chains in one transaction. */
  readonly maxLinesPerTransaction: number;
  /** Most service ports in one transaction. */
  readonly maxServicesPerTransaction: number;
}

/**
 * On iptables-nft, into a table without many of our chains (bench/iptables.ts, iptables 1.8.9,
 * kernel 6.18): the kernel's cost of a commit grows with the chains that exist, the tool's with
 * the square of the services in the transaction, and 100 services balance them.
 */
export const DEFAULT_LIMITS: IptablesPlanLimits = { maxLinesPerTransaction: 5_000, maxServicesPerTransaction: 100 };

/**
 * On iptables-nft, into a table already holding our rules (a restart, a periodic full sync):
 * every commit that adds a rule makes the kernel walk all chains reachable from the built-in
 * ones (about 0.4 s at 10k services), so fewer, larger transactions win. Measured at 10k
 * services rewriting a filled table: 100 per transaction 57 s, 250 30 s, 500 28 s, 1000 30 s.
 */
export const POPULATED_LIMITS: IptablesPlanLimits = { maxLinesPerTransaction: 25_000, maxServicesPerTransaction: 500 };

/** Our service chains in the kernel from which POPULATED_LIMITS pay (about 2k services). */
export const POPULATED_TABLE_CHAINS = 20_000;

/**
 * Legacy iptables replaces the whole table on every commit, so each extra transaction costs a
 * full table copy: few, larger transactions (still bounded) are fastest there.
 */
export const LEGACY_LIMITS: IptablesPlanLimits = { maxLinesPerTransaction: 50_000, maxServicesPerTransaction: 1000 };

export interface IptablesPlanInput {
  readonly rules: RuleSet;
  /** What the kernel holds; undefined when unknown (start, after a failure): everything is written. */
  readonly model: KernelModel | undefined;
  /** Rewrite every chain (upstream's full sync). */
  readonly full: boolean;
  /** Service ports whose chains must be rewritten on a partial sync. */
  readonly changed: ReadonlySet<ServicePortKey>;
  /**
   * Service ports whose chains this sync has already written (a large full sync writes them
   * while it computes the next ones): not written again, and no longer atomic with the rest.
   */
  readonly applied?: ReadonlySet<ServicePortKey>;
  /** The previous rule set, to know which chains a changed service owned before. */
  readonly previous: RuleSet | undefined;
  /** Chains of ours found in the kernel (a save at start or after a failure), to delete when stale. */
  readonly kernelServiceChains?: ReadonlySet<string>;
  /** Jumps from built-in chains that are missing and must be inserted. */
  readonly missingJumps?: readonly JumpRule[];
  /** Also (re)create KUBE-PROXY-CANARY in mangle, nat and filter. */
  readonly canary?: boolean;
  readonly limits?: IptablesPlanLimits;
}

export interface Transaction {
  readonly payload: string;
  /** Service ports whose chains this transaction writes. */
  readonly services: number;
  readonly lines: number;
}

export interface IptablesSyncPlan {
  /** In order: service chains, top-level chains, then (when many) stale-chain removal. Empty when nothing changed. */
  readonly transactions: readonly Transaction[];
  /** Top-level chains as the kernel holds them once every transaction succeeded. */
  readonly filter: ReadonlyMap<string, readonly string[]>;
  readonly nat: ReadonlyMap<string, readonly string[]>;
  /** Service chains written, with the rules of their service port; with `replaceServiceChains`, these are all of them. */
  readonly serviceChainsWritten: ReadonlyMap<string, ServicePortRules>;
  readonly serviceChainsDeleted: readonly string[];
  readonly replaceServiceChains: boolean;
  readonly stats: {
    readonly servicesWritten: number;
    readonly chainsDeleted: number;
    readonly topLevelRewritten: number;
    readonly topLevelPatched: number;
  };
}

/** The kernel's content after `plan` succeeded; reuses (and updates) `model`'s service-chain map. */
export function commitPlan(model: KernelModel | undefined, plan: IptablesSyncPlan): KernelModel {
  const replace = plan.replaceServiceChains || !model;
  const serviceChains = replace ? new Map<string, ServicePortRules>() : model.serviceChains;
  let count = replace ? 0 : model.serviceRuleCount;
  // Released rules rebuild their chains at each read: once per service port here.
  const texts = new Map<ServicePortRules, ReadonlyMap<string, string>>();
  const textOf = (owner: ServicePortRules | undefined, chain: string) => {
    if (!owner) return '';
    let chains = texts.get(owner);
    if (!chains) texts.set(owner, (chains = owner.chains));
    return chains.get(chain) ?? '';
  };
  const rulesOf = (chain: string) => ruleLineCount(textOf(serviceChains.get(chain), chain));
  for (const chain of plan.serviceChainsDeleted) {
    count -= rulesOf(chain);
    serviceChains.delete(chain);
  }
  for (const [chain, owner] of plan.serviceChainsWritten) {
    count += ruleLineCount(textOf(owner, chain)) - rulesOf(chain);
    serviceChains.set(chain, owner);
  }
  return { filter: plan.filter, nat: plan.nat, serviceChains, serviceRuleCount: count };
}

/** Rules per table in `model`. */
export function ruleCounts(model: KernelModel): { nat: number; filter: number } {
  let nat = model.serviceRuleCount;
  for (const lines of model.nat.values()) nat += lines.length;
  let filter = 0;
  for (const lines of model.filter.values()) filter += lines.length;
  return { nat, filter };
}

/** Top-level chains whose rules match disjoint packets, so their order is free. */
export const ORDER_FREE_CHAINS: ReadonlySet<string> = new Set(['filter/KUBE-SERVICES', 'filter/KUBE-EXTERNAL-SERVICES', 'filter/KUBE-NODEPORTS', 'filter/KUBE-PROXY-FIREWALL', 'nat/KUBE-SERVICES', 'nat/KUBE-NODEPORTS']);

function isNodePortsTail(table: string, chain: string, line: string): boolean {
  return table === 'nat' && chain === KUBE_SERVICES && line.endsWith(`-j ${KUBE_NODEPORTS}`);
}

function serviceLines(rules: ServicePortRules): number {
  let n = 0;
  for (const lines of rules.chains.values()) n += ruleLineCount(lines) + 1;
  return n;
}

/** Cuts a stream of service ports into transactions within `limits`. */
export class ServiceGrouper {
  private group: Array<[ServicePortKey, ServicePortRules]> = [];
  private lines = 0;

  constructor(private readonly limits: IptablesPlanLimits) {}

  /** Adds a service port; returns the group it closed when it did not fit in it. */
  add(key: ServicePortKey, rules: ServicePortRules): Array<[ServicePortKey, ServicePortRules]> | undefined {
    const lines = serviceLines(rules);
    const full = this.group.length >= this.limits.maxServicesPerTransaction || this.lines + lines > this.limits.maxLinesPerTransaction;
    const closed = this.group.length > 0 && full ? this.take() : undefined;
    this.group.push([key, rules]);
    this.lines += lines;
    return closed;
  }

  /** The open group, which is then emptied. */
  take(): Array<[ServicePortKey, ServicePortRules]> {
    const group = this.group;
    this.group = [];
    this.lines = 0;
    return group;
  }
}

/** A transaction of per-service chains only (nothing references them yet, or they are rewritten in place). */
export function serviceChainsTransaction(markMasq: readonly string[], group: readonly ServicePortRules[]): Transaction {
  const nat = new RestoreTableWriter('nat');
  // Service chains jump to KUBE-MARK-MASQ, which may not exist yet on a first sync.
  nat.declareChain(KUBE_MARK_MASQ);
  for (const line of markMasq) nat.appendRule(KUBE_MARK_MASQ, line);
  writeServiceChains(nat, group);
  return { payload: nat.toString(), services: group.length, lines: nat.chainCount + nat.ruleCount };
}

/** Jump targets come first: endpoints, then the policy chains, then external, then firewall. */
function chainWriteRank(chain: string): number {
  if (chain.startsWith(ENDPOINT_CHAIN_PREFIX)) return 0;
  if (chain.startsWith(SERVICE_EXTERNAL_CHAIN_PREFIX)) return 2;
  if (chain.startsWith(SERVICE_FIREWALL_CHAIN_PREFIX)) return 3;
  return 1; // KUBE-SVC-, KUBE-SVL-
}

function descending(a: string, b: string): number {
  return a < b ? 1 : a > b ? -1 : 0;
}

/** The per-service chains of `services`, in the write order described at the top. */
function writeServiceChains(writer: RestoreTableWriter, services: readonly ServicePortRules[]): void {
  const chains: Array<[string, string]> = [];
  for (const svc of services) for (const entry of svc.chains) chains.push(entry);
  chains.sort(([a], [b]) => chainWriteRank(a) - chainWriteRank(b) || descending(a, b));
  for (const [chain, rules] of chains) writer.writeChain(chain, ruleLines(rules));
}

function jumpTarget(line: string): string {
  const at = line.lastIndexOf('-j ');
  return at < 0 ? '' : line.slice(at + 3).split(' ', 1)[0]!;
}

/** An order-free chain's rules as written: by descending jump target, KUBE-SERVICES' node-port tail last. */
function writeOrder(table: string, chain: string, rules: readonly string[]): readonly string[] {
  if (table !== 'nat' || !ORDER_FREE_CHAINS.has(`${table}/${chain}`)) return rules;
  const tail = rules.filter((l) => isNodePortsTail(table, chain, l));
  const body = rules.filter((l) => !isNodePortsTail(table, chain, l)).map((l) => [jumpTarget(l), l] as const);
  body.sort(([a], [b]) => descending(a, b));
  return [...body.map(([, l]) => l), ...tail];
}

/**
 * Rewrites or patches one top-level chain in `writer`. Returns the rules the kernel will hold
 * and whether the chain was rewritten, patched or left alone.
 */
function syncTopLevelChain(
  writer: RestoreTableWriter,
  table: string,
  chain: string,
  wanted: readonly string[],
  current: readonly string[] | undefined,
  force: boolean,
): { rules: readonly string[]; action: 'rewrite' | 'patch' | 'none' } {
  if (!force && current && sameLines(current, wanted)) return { rules: current, action: 'none' };
  if (!force && current && ORDER_FREE_CHAINS.has(`${table}/${chain}`)) {
    const patch = patchOrderFree(table, chain, current, wanted);
    if (patch && patch.removed.length + patch.added.length === 0) return { rules: current, action: 'none' };
    if (patch) {
      for (const line of patch.removed) writer.deleteRule(chain, line);
      // Inserting at the top keeps KUBE-SERVICES' node-port tail last.
      for (const line of patch.added) writer.insertRule(chain, line, 1);
      return { rules: patch.result, action: 'patch' };
    }
  }
  const rules = writeOrder(table, chain, wanted);
  writer.declareChain(chain);
  for (const line of rules) writer.appendRule(chain, line);
  return { rules, action: 'rewrite' };
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A delete/insert patch, or undefined when rewriting the chain is simpler or required. */
function patchOrderFree(
  table: string,
  chain: string,
  current: readonly string[],
  wanted: readonly string[],
): { removed: string[]; added: string[]; result: string[] } | undefined {
  const currentSet = new Set(current);
  const wantedSet = new Set(wanted);
  // Duplicates make delete-by-specification ambiguous.
  if (currentSet.size !== current.length || wantedSet.size !== wanted.length) return undefined;
  const tailOf = (lines: readonly string[]) => lines.filter((l) => isNodePortsTail(table, chain, l));
  if (!sameLines(tailOf(current), tailOf(wanted))) return undefined;
  if (current.length > 0 && tailOf(current).length > 0 && !isNodePortsTail(table, chain, current[current.length - 1]!)) return undefined;
  const removed = current.filter((l) => !wantedSet.has(l));
  const added = wanted.filter((l) => !currentSet.has(l));
  if (removed.length + added.length > Math.max(16, wanted.length / 2)) return undefined;
  const result = [...[...added].reverse(), ...current.filter((l) => wantedSet.has(l))];
  return { removed, added, result };
}

/** Most chains one removal transaction flushes or deletes. */
export const MAX_CHAINS_PER_REMOVAL = 2_000;

/**
 * Transactions that remove `chains` from `table` in bounded steps: first every chain is
 * flushed (so none references another any more), then they are deleted.
 */
export function chainRemovalTransactions(table: 'nat' | 'filter' | 'mangle', chains: readonly string[], perTransaction = MAX_CHAINS_PER_REMOVAL): string[] {
  if (chains.length === 0) return [];
  if (chains.length <= perTransaction) {
    const w = new RestoreTableWriter(table);
    for (const chain of chains) w.deleteChain(chain);
    return [w.toString()];
  }
  const out: string[] = [];
  for (const remove of [false, true]) {
    for (let i = 0; i < chains.length; i += perTransaction) {
      const w = new RestoreTableWriter(table);
      for (const chain of chains.slice(i, i + perTransaction)) {
        if (remove) w.deleteChain(chain);
        else w.declareChain(chain);
      }
      out.push(w.toString());
    }
  }
  return out;
}

export function planSync(input: IptablesPlanInput): IptablesSyncPlan {
  const { rules, model, previous } = input;
  const limits = input.limits ?? DEFAULT_LIMITS;
  const everything = input.full || !model;

  // Which service ports to write.
  const toWrite: Array<[ServicePortKey, ServicePortRules]> = [];
  const serviceChainsWritten = new Map<string, ServicePortRules>();
  let servicesWritten = 0;
  for (const [key, svc] of rules.services) {
    if (svc.chainNames.length === 0 || !(everything || input.changed.has(key) || !previous?.services.has(key))) continue;
    servicesWritten++;
    for (const chain of svc.chainNames) serviceChainsWritten.set(chain, svc);
    if (!input.applied?.has(key)) toWrite.push([key, svc]);
  }

  // Chains now stale. A partial sync looks only at the services that changed (chain names
  // are per service); a full one at everything known.
  const stale = new Set<string>();
  if (everything) {
    const active = new Set<string>();
    for (const svc of rules.services.values()) for (const chain of svc.chainNames) active.add(chain);
    for (const chain of model?.serviceChains.keys() ?? []) if (!active.has(chain)) stale.add(chain);
    for (const chain of input.kernelServiceChains ?? []) if (!active.has(chain)) stale.add(chain);
    for (const svc of previous?.services.values() ?? []) for (const chain of svc.chainNames) if (!active.has(chain)) stale.add(chain);
  } else {
    for (const key of input.changed) {
      const before = previous?.services.get(key)?.chainNames ?? [];
      const now = new Set(rules.services.get(key)?.chainNames);
      for (const chain of before) if (!now.has(chain) && model.serviceChains.has(chain)) stale.add(chain);
    }
  }
  // Split the service chains into bounded transactions. A single group joins the top-level
  // transaction (one commit, so one validation of the table by the kernel); with several, the
  // top-level one holds no service chain, whose names would make its statements dearer.
  const grouper = new ServiceGrouper(limits);
  const groups: ServicePortRules[][] = [];
  for (const [key, svc] of toWrite) {
    const closed = grouper.add(key, svc);
    if (closed) groups.push(closed.map(([, r]) => r));
  }
  const last = grouper.take().map(([, r]) => r);
  const alone = groups.length === 0 && (input.applied?.size ?? 0) === 0;
  if (!alone && last.length > 0) groups.push(last);
  const finalGroup = alone ? last : [];
  const markMasq = rules.nat.get(KUBE_MARK_MASQ) ?? [];
  const transactions: Transaction[] = groups.map((group) => serviceChainsTransaction(markMasq, group));

  const filter = new RestoreTableWriter('filter');
  const nat = new RestoreTableWriter('nat');
  let topLevelRewritten = 0;
  let topLevelPatched = 0;
  const newFilter = new Map<string, readonly string[]>();
  const newNat = new Map<string, readonly string[]>();
  for (const [chain, wanted] of rules.filter) {
    const r = syncTopLevelChain(filter, 'filter', chain, wanted, model?.filter.get(chain), everything);
    newFilter.set(chain, r.rules);
    if (r.action === 'rewrite') topLevelRewritten++;
    if (r.action === 'patch') topLevelPatched++;
  }
  // A top-level chain we no longer want (KUBE-FIREWALL once localhost node ports are off) is emptied.
  for (const chain of model?.filter.keys() ?? []) if (!rules.filter.has(chain)) filter.declareChain(chain);
  writeServiceChains(nat, finalGroup);
  for (const [chain, wanted] of rules.nat) {
    const r = syncTopLevelChain(nat, 'nat', chain, wanted, model?.nat.get(chain), everything);
    newNat.set(chain, r.rules);
    if (r.action === 'rewrite') topLevelRewritten++;
    if (r.action === 'patch') topLevelPatched++;
  }
  // Stale chains go in the same transaction when few; many are removed in bounded steps after
  // it (nothing of ours references them once the top-level chains are rewritten).
  const staleChains = [...stale].sort();
  const deleteLater = staleChains.length > MAX_CHAINS_PER_REMOVAL;
  if (!deleteLater) for (const chain of staleChains) nat.deleteChain(chain);

  let mangle: RestoreTableWriter | undefined;
  if (input.canary) {
    mangle = new RestoreTableWriter('mangle').declareChain(KUBE_PROXY_CANARY);
    nat.declareChain(KUBE_PROXY_CANARY);
    filter.declareChain(KUBE_PROXY_CANARY);
  }
  for (const jump of input.missingJumps ?? []) {
    const writer = jump.table === 'nat' ? nat : jump.table === 'filter' ? filter : undefined;
    writer?.insertRule(jump.from, formatRestoreLine(jumpRuleArgs(jump)), 1);
  }

  const sections = [filter, nat, mangle].filter((w): w is RestoreTableWriter => w !== undefined && !w.isEmpty());
  if (sections.length > 0) {
    transactions.push({
      payload: sections.map((w) => w.toString()).join(''),
      services: finalGroup.length,
      lines: sections.reduce((n, w) => n + w.chainCount + w.ruleCount + w.deletedChainCount, 0),
    });
  }

  if (deleteLater) {
    for (const payload of chainRemovalTransactions('nat', staleChains)) transactions.push({ payload, services: 0, lines: payload.split('\n').length });
  }

  return {
    transactions,
    filter: newFilter,
    nat: newNat,
    serviceChainsWritten,
    serviceChainsDeleted: staleChains,
    replaceServiceChains: everything,
    stats: { servicesWritten, chainsDeleted: stale.size, topLevelRewritten, topLevelPatched },
  };
}
