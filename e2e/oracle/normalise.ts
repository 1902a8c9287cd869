// What the kernel holds, reduced to what an operator or a tool reading the rules would see, so
// that two proxies' rules can be compared: no counters, no dump comments, and chains whose
// rules are order-free sorted (each of their rules matches a distinct destination, or all of
// them lead to the same place). Everything else keeps the kernel's order.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseIptablesSave } from '@kube-proxy-ts/netfilter';
import { parse } from 'yaml';

export type Family = 'ipv4' | 'ipv6';

/** One chain's rules and, for built-in chains, its policy. */
export interface NormalChain {
  policy: string | undefined;
  rules: string[];
  /** Sorted before comparison. */
  orderFree: boolean;
}

/** table -> chain -> rules. */
export type NormalTables = Map<string, Map<string, NormalChain>>;

/**
 * Per table, the chains whose rule order carries no meaning. nat KUBE-SERVICES is order-free
 * except for its last rule (the jump to KUBE-NODEPORTS for local destinations), which must stay
 * last: it is checked separately. KUBE-FW-* rules all jump to the same KUBE-EXT-* chain.
 */
const ORDER_FREE: Record<string, RegExp> = {
  nat: /^(KUBE-SERVICES|KUBE-NODEPORTS|KUBE-FW-.*)$/,
  filter: /^(KUBE-SERVICES|KUBE-EXTERNAL-SERVICES|KUBE-NODEPORTS|KUBE-PROXY-FIREWALL)$/,
};
const NODEPORTS_JUMP = /-j KUBE-NODEPORTS$/;

/** `iptables-save` output (any tables) reduced for comparison. */
export function normaliseIptablesSave(text: string): NormalTables {
  const out: NormalTables = new Map();
  for (const [table, chains] of parseIptablesSave(text)) {
    const t = new Map<string, NormalChain>();
    for (const [name, chain] of chains) {
      const orderFree = ORDER_FREE[table]?.test(name) ?? false;
      let rules = [...chain.rules];
      if (orderFree) {
        // The jump to KUBE-NODEPORTS must be last: kept there when it is, put first when it is
        // not, so that it shows as an order difference.
        const nodePorts = table === 'nat' && name === 'KUBE-SERVICES' ? rules.filter((r) => NODEPORTS_JUMP.test(r)) : [];
        const rest = rules.filter((r) => !nodePorts.includes(r)).sort();
        rules = nodePorts.length === 0 ? rest : NODEPORTS_JUMP.test(rules.at(-1) ?? '') ? [...rest, ...nodePorts] : [...nodePorts, ...rest];
      }
      t.set(name, { policy: chain.policy, rules, orderFree });
    }
    out.set(table, t);
  }
  return out;
}

/** One way two dumps differ. */
export interface Difference {
  mode: 'iptables' | 'nftables';
  family: Family;
  table: string;
  chain: string;
  /**
   * missing: upstream has it, ours not; extra: ours has it, upstream not; order: same rules, other
   * order; policy: another built-in chain policy; elements/definition: a set's or base chain's.
   */
  kind: 'missing' | 'extra' | 'order' | 'policy' | 'definition';
  /** The rule, element or definition concerned ('' for a whole chain). */
  item: string;
}

export function describe(d: Difference): string {
  const where = `${d.mode} ${d.family} ${d.table} ${d.chain}`;
  return `${d.kind.padEnd(10)} ${where}${d.item ? `: ${d.item}` : ''}`;
}

function multisetDiff(a: readonly string[], b: readonly string[]): { onlyA: string[]; onlyB: string[] } {
  const minus = (x: readonly string[], y: readonly string[]) => {
    const counts = new Map<string, number>();
    for (const v of y) counts.set(v, (counts.get(v) ?? 0) + 1);
    return x.filter((v) => {
      const n = counts.get(v) ?? 0;
      if (n > 0) counts.set(v, n - 1);
      return n === 0;
    });
  };
  return { onlyA: minus(a, b), onlyB: minus(b, a) };
}

/** Every difference between upstream's and our iptables rules. */
export function diffIptables(family: Family, upstream: NormalTables, ours: NormalTables): Difference[] {
  const out: Difference[] = [];
  const add = (table: string, chain: string, kind: Difference['kind'], item: string) => out.push({ mode: 'iptables', family, table, chain, kind, item });
  for (const table of new Set([...upstream.keys(), ...ours.keys()])) {
    const u = upstream.get(table) ?? new Map<string, NormalChain>();
    const o = ours.get(table) ?? new Map<string, NormalChain>();
    for (const chain of [...new Set([...u.keys(), ...o.keys()])].sort()) {
      const uc = u.get(chain);
      const oc = o.get(chain);
      if (!oc) {
        add(table, chain, 'missing', '');
        for (const r of uc?.rules ?? []) add(table, chain, 'missing', r);
        continue;
      }
      if (!uc) {
        add(table, chain, 'extra', '');
        for (const r of oc.rules) add(table, chain, 'extra', r);
        continue;
      }
      if (uc.policy !== oc.policy) add(table, chain, 'policy', `${uc.policy ?? '-'} (ours ${oc.policy ?? '-'})`);
      const { onlyA, onlyB } = multisetDiff(uc.rules, oc.rules);
      for (const r of onlyA) add(table, chain, 'missing', r);
      for (const r of onlyB) add(table, chain, 'extra', r);
      if (onlyA.length === 0 && onlyB.length === 0 && uc.rules.join('\n') !== oc.rules.join('\n')) {
        add(table, chain, 'order', `upstream:\n    ${uc.rules.join('\n    ')}\n  ours:\n    ${oc.rules.join('\n    ')}`);
      }
    }
  }
  return out;
}

// --- nftables: the table, its chains with their rules, and its named sets and maps with their elements ---

interface NftJsonChain { name: string; type?: string; hook?: string; prio?: number; policy?: string }
interface NftJsonSet { name: string; type: unknown; map?: unknown; flags?: unknown; elem?: unknown[] }

/** What `nft -j list table <family> kube-proxy` holds, without handles. */
export interface NftTable {
  /** base chain name -> "type nat hook prerouting priority -100 policy accept". */
  baseChains: Map<string, string>;
  /** Names of the other chains. */
  chains: Set<string>;
  /** set/map name -> "type ... : ..." */
  sets: Map<string, string>;
  /** set/map name -> its elements, each as JSON, sorted. */
  elements: Map<string, string[]>;
  /** Chain -> its rules in order, each as JSON (expressions and comment; no handle). */
  rules: Map<string, string[]>;
}

export function normaliseNftJson(json: string): NftTable {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  const fixed: NftTable = { baseChains: new Map(), chains: new Set(), sets: new Map(), elements: new Map(), rules: new Map() };
  const rules: Array<{ chain: string; expr: unknown; comment?: unknown }> = [];
  for (const entry of doc.nftables ?? []) {
    const rule = entry.rule as { chain: string; expr: unknown; comment?: unknown } | undefined;
    if (rule) rules.push(rule);
    const chain = entry.chain as NftJsonChain | undefined;
    if (chain) {
      if (chain.hook) fixed.baseChains.set(chain.name, `type ${chain.type} hook ${chain.hook} priority ${chain.prio} policy ${chain.policy ?? 'accept'}`);
      else fixed.chains.add(chain.name);
    }
    const set = (entry.set ?? entry.map) as NftJsonSet | undefined;
    if (set) {
      const type = (t: unknown) => (Array.isArray(t) ? t.join(' . ') : String(t));
      fixed.sets.set(set.name, `${entry.map ? 'map' : 'set'} ${type(set.type)}${set.map !== undefined ? ` : ${type(set.map)}` : ''}`);
      fixed.elements.set(set.name, (set.elem ?? []).map((e) => JSON.stringify(e)).sort());
    }
  }
  // Our endpoint maps (`dnat to numgen random mod n offset k map @endpoints-<g>`) are written out
  // as the anonymous map upstream writes: elements k..k+n-1 renumbered from 0, the map left out.
  const endpointMaps = new Map<string, unknown[][]>();
  for (const name of [...fixed.sets.keys()].filter((n) => /^endpoints-\d+$/.test(n))) {
    endpointMaps.set(name, (fixed.elements.get(name) ?? []).map((e) => JSON.parse(e) as unknown[]));
    fixed.sets.delete(name);
    fixed.elements.delete(name);
  }
  for (const rule of rules) rule.expr = inlineEndpointMaps(rule.expr, endpointMaps);
  for (const { chain, expr, comment } of rules) {
    const list = fixed.rules.get(chain) ?? [];
    list.push(JSON.stringify(comment === undefined ? { expr } : { expr, comment }));
    fixed.rules.set(chain, list);
  }
  return fixed;
}

interface NumgenMap { map: { key: { numgen: { mode: string; mod: number; offset: number } }; data: unknown } }

function inlineEndpointMaps(expr: unknown, maps: ReadonlyMap<string, unknown[][]>): unknown {
  if (!Array.isArray(expr)) return expr;
  return expr.map((e: { dnat?: { addr?: unknown } }) => {
    const addr = e.dnat?.addr as NumgenMap | undefined;
    const name = typeof addr?.map?.data === 'string' ? addr.map.data.replace(/^@/, '') : undefined;
    const elements = name !== undefined ? maps.get(name) : undefined;
    if (!addr?.map?.key?.numgen || !elements) return e;
    const { mod, offset } = addr.map.key.numgen;
    const byKey = new Map(elements.map(([k, v]) => [Number(k), v]));
    const set = Array.from({ length: mod }, (_, i) => [i, byKey.get(offset + i) ?? null]);
    return { ...e, dnat: { ...e.dnat, addr: { map: { key: { numgen: { ...addr.map.key.numgen, offset: 0 } }, data: { set } } } } };
  });
}

export function diffNftables(family: Family, upstream: NftTable, ours: NftTable): Difference[] {
  const out: Difference[] = [];
  const table = 'kube-proxy';
  const add = (chain: string, kind: Difference['kind'], item: string) => out.push({ mode: 'nftables', family, table, chain, kind, item });
  for (const name of [...new Set([...upstream.baseChains.keys(), ...ours.baseChains.keys()])].sort()) {
    const u = upstream.baseChains.get(name);
    const o = ours.baseChains.get(name);
    if (u === undefined) add(name, 'extra', `base chain ${o}`);
    else if (o === undefined) add(name, 'missing', `base chain ${u}`);
    else if (u !== o) add(name, 'definition', `${u} (ours ${o})`);
  }
  const { onlyA, onlyB } = multisetDiff([...upstream.chains].sort(), [...ours.chains].sort());
  for (const c of onlyA) add(c, 'missing', 'chain');
  for (const c of onlyB) add(c, 'extra', 'chain');
  for (const name of [...new Set([...upstream.rules.keys(), ...ours.rules.keys()])].sort()) {
    const u = upstream.rules.get(name) ?? [];
    const o = ours.rules.get(name) ?? [];
    const d = multisetDiff(u, o);
    for (const r of d.onlyA) add(name, 'missing', `rule ${r}`);
    for (const r of d.onlyB) add(name, 'extra', `rule ${r}`);
    if (d.onlyA.length === 0 && d.onlyB.length === 0 && u.join('\n') !== o.join('\n')) {
      add(name, 'order', `upstream:\n    ${u.join('\n    ')}\n  ours:\n    ${o.join('\n    ')}`);
    }
  }
  for (const name of [...new Set([...upstream.sets.keys(), ...ours.sets.keys()])].sort()) {
    const u = upstream.sets.get(name);
    const o = ours.sets.get(name);
    if (u === undefined) add(name, 'extra', `set ${o}`);
    else if (o === undefined) add(name, 'missing', `set ${u}`);
    else {
      if (u !== o) add(name, 'definition', `${u} (ours ${o})`);
      const d = multisetDiff(upstream.elements.get(name) ?? [], ours.elements.get(name) ?? []);
      for (const e of d.onlyA) add(name, 'missing', `element ${e}`);
      for (const e of d.onlyB) add(name, 'extra', `element ${e}`);
    }
  }
  return out;
}

// --- the checked-in list of accepted differences ---

/** An entry of accepted-differences.yaml: every given field must match; patterns are anchored regexps. */
export interface AcceptedDifference {
  mode: Difference['mode'];
  family?: Family;
  table?: string;
  chain?: string;
  /** A pattern over Difference['kind'], e.g. "missing|extra". */
  kind?: string;
  item?: string;
  reason: string;
  /**
   * A real difference, known and not fixed yet: it does not fail the suite, but every run lists
   * it, and an entry that no longer matches anything is reported so it can be removed.
   */
  fixPending?: boolean;
}

export const ACCEPTED_FILE = fileURLToPath(new URL('./accepted-differences.yaml', import.meta.url));

/** Reads and checks the list; a malformed entry is an error naming it. */
export function loadAccepted(file = ACCEPTED_FILE): AcceptedDifference[] {
  const doc = parse(readFileSync(file, 'utf8')) as { accepted?: unknown };
  if (!Array.isArray(doc?.accepted)) throw new Error(`${file}: expected a top-level "accepted" list`);
  return doc.accepted.map((e: unknown, i: number) => {
    const entry = e as Partial<AcceptedDifference>;
    if (entry?.mode !== 'iptables' && entry?.mode !== 'nftables') throw new Error(`${file}: entry ${i + 1} needs mode iptables or nftables`);
    if (typeof entry.reason !== 'string' || entry.reason.trim().length < 10) throw new Error(`${file}: entry ${i + 1} needs a reason`);
    for (const key of ['chain', 'item', 'table', 'kind'] as const) {
      if (entry[key] !== undefined) new RegExp(`^(?:${entry[key]})$`, 's'); // a bad pattern fails here, by entry
    }
    return entry as AcceptedDifference;
  });
}

export function isAccepted(d: Difference, accepted: readonly AcceptedDifference[]): AcceptedDifference | undefined {
  const m = (pattern: string | undefined, value: string) => pattern === undefined || new RegExp(`^(?:${pattern})$`, 's').test(value);
  return accepted.find(
    (a) => a.mode === d.mode && (a.family === undefined || a.family === d.family) && m(a.kind, d.kind) && m(a.table, d.table) && m(a.chain, d.chain) && m(a.item, d.item),
  );
}
