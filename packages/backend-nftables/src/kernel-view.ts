// `kube-proxy inspect` and `explain` in nftables mode: one `nft -j list table <family> kube-proxy`,
// indexed through the verdict maps (service-ips, service-nodeports, no-endpoint-*, firewall-ips)
// the service chains' numgen maps and the endpoint maps they DNAT through; and a walker that takes a packet through the base chains
// of its hook in priority order, as the kernel would, evaluating the expressions upstream's
// layout uses. An expression it does not know is explored both ways and noted, never guessed.

import { BlockList, isIP } from 'node:net';
import {
  emptyKernelServicePortView,
  finishKernelServicePortView,
  frontend,
  joinHostPort,
  nodePortFrontend,
  servicePortNameString,
  type CommandRunner,
  type ExplainPacket,
  type ExplainPath,
  type Explanation,
  type ExplainVerdict,
  type IPFamily,
  type KernelServicePortView,
  type KernelView,
  type Protocol,
  type ServicePort,
} from '@kube-proxy-ts/core';
import { nftServiceChainBase } from '@kube-proxy-ts/netfilter';
import {
  CLUSTER_IPS_CHECK_CHAIN,
  CLUSTER_POLICY_PREFIX,
  ENDPOINT_PREFIX,
  EXTERNAL_PREFIX,
  FIREWALL_IPS_MAP,
  FIREWALL_PREFIX,
  LOCAL_POLICY_PREFIX,
  NO_ENDPOINT_NODEPORTS_MAP,
  NO_ENDPOINT_SERVICES_MAP,
  nftFamily,
  SERVICE_IPS_MAP,
  SERVICE_NODEPORTS_MAP,
  TABLE,
} from './layout.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- nft's JSON schema is open-ended; every access below is checked */
type Json = any;

interface NftChain {
  readonly name: string;
  readonly hook?: string;
  readonly prio?: number;
  readonly comment?: string;
  readonly rules: { readonly expr: readonly Json[]; readonly comment?: string }[];
}

interface MapElement {
  /** Key parts: addresses as text, protocols lower case, ports as numbers. */
  readonly key: readonly (string | number)[];
  readonly verdict: Json;
  readonly comment?: string;
}

/** One table as `nft -j list table` prints it. */
export interface NftTable {
  readonly chains: ReadonlyMap<string, NftChain>;
  /** Set name -> elements (addresses, or prefixes as `addr/len`). */
  readonly sets: ReadonlyMap<string, readonly string[]>;
  readonly maps: ReadonlyMap<string, readonly MapElement[]>;
}

function keyParts(k: Json): (string | number)[] {
  if (k && typeof k === 'object' && 'elem' in k) return keyParts(k.elem.val);
  if (k && typeof k === 'object' && 'concat' in k) return (k.concat as Json[]).flatMap(keyParts);
  if (k && typeof k === 'object' && 'prefix' in k) return [`${k.prefix.addr}/${k.prefix.len}`];
  return [k as string | number];
}

/** Parses `nft -j list table ...` output. */
export function parseNftTable(text: string): NftTable {
  const doc = JSON.parse(text) as { nftables?: Json[] };
  if (!Array.isArray(doc.nftables)) throw new Error('nft -j output without an "nftables" array');
  const chains = new Map<string, NftChain>();
  const sets = new Map<string, string[]>();
  const maps = new Map<string, MapElement[]>();
  for (const o of doc.nftables) {
    if (o.chain) {
      const c = o.chain;
      chains.set(c.name, { name: c.name, ...(c.hook ? { hook: c.hook, prio: Number(c.prio) } : {}), ...(c.comment ? { comment: c.comment } : {}), rules: [] });
    } else if (o.rule) {
      const r = o.rule;
      let chain = chains.get(r.chain);
      if (!chain) chains.set(r.chain, (chain = { name: r.chain, rules: [] }));
      chain.rules.push({ expr: r.expr ?? [], ...(r.comment ? { comment: r.comment } : {}) });
    } else if (o.map) {
      maps.set(
        o.map.name,
        ((o.map.elem ?? []) as Json[]).map(([k, v]: Json[]) => ({ key: keyParts(k), verdict: v, ...(k?.elem?.comment ? { comment: k.elem.comment } : {}) })),
      );
    } else if (o.set) {
      sets.set(o.set.name, ((o.set.elem ?? []) as Json[]).map((e) => keyParts(e).join(' . ')));
    }
  }
  return { chains, sets, maps };
}

/** The whole kube-proxy table of a family: one nft command. */
export async function listTableForInspection(runner: CommandRunner, ipFamily: IPFamily, timeoutMs: number): Promise<NftTable> {
  const family = nftFamily(ipFamily);
  const r = await runner.run('nft', ['-j', 'list', 'table', family, TABLE], { timeoutMs });
  if (r.code !== 0) throw new Error(`nft -j list table ${family} ${TABLE} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  return parseNftTable(r.stdout);
}

const SERVICE_CHAIN_PREFIXES = [CLUSTER_POLICY_PREFIX, LOCAL_POLICY_PREFIX, EXTERNAL_PREFIX, FIREWALL_PREFIX];

/** The hashed base of a per-service chain (`service-HASH-ns/svc/tcp/p`), or undefined. */
function serviceBase(chain: string): string | undefined {
  const prefix = SERVICE_CHAIN_PREFIXES.find((p) => chain.startsWith(p));
  return prefix && chain.includes('/') ? chain.slice(prefix.length) : undefined;
}

function verdictTarget(v: Json): string | undefined {
  return v?.goto?.target ?? v?.jump?.target;
}

const protocolOf = (p: string | number): Protocol | undefined => {
  const u = String(p).toUpperCase();
  return u === 'TCP' || u === 'UDP' || u === 'SCTP' ? u : undefined;
};

function elementFrontend(key: readonly (string | number)[]): string | undefined {
  if (key.length === 3) {
    const proto = protocolOf(key[1]!);
    return proto ? frontend(String(key[0]), Number(key[2]), proto) : undefined;
  }
  if (key.length === 2) {
    const proto = protocolOf(key[0]!);
    return proto ? nodePortFrontend(Number(key[1]), proto) : undefined;
  }
  return undefined;
}

function blockText(v: Json): 'reject' | 'drop' {
  return v?.drop !== undefined ? 'drop' : 'reject';
}

/** The numgen and affinity targets of a policy chain: its endpoint chains. */
function endpointChainsOf(chain: NftChain | undefined): string[] {
  const out: string[] = [];
  const visit = (x: Json): void => {
    if (Array.isArray(x)) x.forEach(visit);
    else if (x && typeof x === 'object') {
      const t = verdictTarget(x);
      if (t?.startsWith(ENDPOINT_PREFIX)) out.push(t);
      else for (const v of Object.values(x)) visit(v);
    }
  };
  for (const r of chain?.rules ?? []) visit(r.expr);
  return out;
}

/** Each map's elements by their number key, built once per listing. */
const elementsByNumber = new WeakMap<NftTable, Map<string, Map<number, Json>>>();

/**
 * Where a `dnat` expression sends a packet: its address (and port), or, through an endpoint map
 * (`numgen random mod n offset k map @m`), each of the n elements from k, taken 1/n of the time;
 * undefined for a number the map lacks (the kernel's lookup fails and the rule does nothing).
 */
function dnatTargets(dnat: Json, table: NftTable): (string | undefined)[] {
  const map = dnat?.addr?.map;
  if (map === undefined) return [dnat.port !== undefined ? joinHostPort(String(dnat.addr), Number(dnat.port)) : String(dnat.addr)];
  const numgen = map.key?.numgen;
  const name = typeof map.data === 'string' && map.data.startsWith('@') ? map.data.slice(1) : undefined;
  if (!numgen || !name) return [];
  const mod = Number(numgen.mod) || 0;
  const offset = Number(numgen.offset) || 0;
  let maps = elementsByNumber.get(table);
  if (!maps) elementsByNumber.set(table, (maps = new Map()));
  let byKey = maps.get(name);
  if (!byKey) maps.set(name, (byKey = new Map((table.maps.get(name) ?? []).map((el) => [Number(el.key[0]), el.verdict]))));
  const out: (string | undefined)[] = [];
  for (let n = offset; n < offset + mod; n++) {
    const parts = byKey.has(n) ? keyParts(byKey.get(n)) : [];
    out.push(parts.length === 2 ? joinHostPort(String(parts[0]), Number(parts[1])) : parts.length === 1 ? String(parts[0]) : undefined);
  }
  return out;
}

function dnatsOf(chain: NftChain | undefined, table: NftTable): string[] {
  const out: string[] = [];
  for (const r of chain?.rules ?? []) {
    for (const e of r.expr) if (e?.dnat?.addr !== undefined) for (const t of dnatTargets(e.dnat, table)) if (t !== undefined) out.push(t);
  }
  return out;
}

/** What the kernel holds for each of `servicePorts`, from one listing of the table. */
export function nftablesKernelView(table: NftTable, servicePorts: readonly ServicePort[], ipFamily: IPFamily): KernelView {
  // chain base -> frontends dispatched to its chains; frontend -> blocks
  const dispatched = new Map<string, Set<string>>();
  for (const map of [SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP]) {
    for (const el of table.maps.get(map) ?? []) {
      const base = serviceBase(verdictTarget(el.verdict) ?? '');
      const f = elementFrontend(el.key);
      if (!base || !f) continue;
      if (!dispatched.has(base)) dispatched.set(base, new Set());
      dispatched.get(base)!.add(f);
    }
  }
  const blocks = new Map<string, { text: string; comment?: string }[]>();
  const addBlock = (f: string, text: string, comment?: string) => blocks.set(f, [...(blocks.get(f) ?? []), { text, ...(comment ? { comment } : {}) }]);
  for (const map of [NO_ENDPOINT_SERVICES_MAP, NO_ENDPOINT_NODEPORTS_MAP]) {
    for (const el of table.maps.get(map) ?? []) {
      const f = elementFrontend(el.key);
      if (!f) continue;
      const what = blockText(el.verdict);
      addBlock(f, `${f} ${what}: ${what === 'reject' ? 'no endpoints' : 'no local endpoints'} (${map}${el.comment ? ` ${el.comment}` : ''})`, el.comment);
    }
  }
  for (const el of table.maps.get(FIREWALL_IPS_MAP) ?? []) {
    const f = elementFrontend(el.key);
    const target = verdictTarget(el.verdict);
    const base = serviceBase(target ?? '');
    if (f && base) {
      addBlock(f, `${f} drop: sources outside loadBalancerSourceRanges (${target})`);
      if (!dispatched.has(base)) dispatched.set(base, new Set());
      dispatched.get(base)!.add(f);
    }
  }

  const owned = new Set<string>();
  const result: Record<string, KernelServicePortView> = {};
  for (const sp of servicePorts) {
    const base = nftServiceChainBase(sp.name);
    const nameString = servicePortNameString(sp.name);
    const v = emptyKernelServicePortView();
    v.frontends.push(...(dispatched.get(base) ?? []));
    for (const prefix of SERVICE_CHAIN_PREFIXES) {
      const chain = prefix + base;
      if (!table.chains.has(chain)) continue;
      owned.add(chain);
      v.objects.push(`chain ${chain}`);
    }
    for (const prefix of [CLUSTER_POLICY_PREFIX, LOCAL_POLICY_PREFIX]) {
      const policyChain = table.chains.get(prefix + base);
      // Endpoints are DNATed in the policy chain itself, or in endpoint chains it jumps to.
      v.endpoints.push(...dnatsOf(policyChain, table));
      for (const epChain of endpointChainsOf(policyChain)) {
        if (!owned.has(epChain)) v.objects.push(`chain ${epChain}`);
        owned.add(epChain);
        v.endpoints.push(...dnatsOf(table.chains.get(epChain), table));
      }
    }
    const candidates = new Set([sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs].map((ip) => frontend(ip, sp.port, sp.protocol)));
    if (sp.nodePort !== 0) candidates.add(nodePortFrontend(sp.nodePort, sp.protocol));
    for (const f of v.frontends) candidates.add(f);
    for (const f of candidates) {
      for (const b of blocks.get(f) ?? []) {
        // no-endpoint elements name their service port; firewall ones are found by this port's chains.
        if (b.comment !== undefined ? b.comment !== nameString : !b.text.includes(base)) continue;
        v.blocked.push(b.text);
        v.frontends.push(f);
      }
    }
    result[sp.key] = finishKernelServicePortView(v);
  }
  const unowned = [...table.chains.keys()].filter((c) => (serviceBase(c) !== undefined || (c.startsWith(ENDPOINT_PREFIX) && c.includes('/'))) && !owned.has(c)).map((c) => `chain ${c}`).sort();
  return { mode: 'nftables', ipFamily, servicePorts: result, unowned };
}

// ---- explain ----

interface Walk {
  dst: string;
  port: number;
  masquerade: boolean;
  probability: number;
  affinity: boolean;
  steps: string[];
  dnat?: string;
  /** The last map element that sent the packet somewhere, for the reason of a drop or reject. */
  via?: string;
  unknown: string[];
}

interface Ctx {
  readonly table: NftTable;
  readonly packet: ExplainPacket;
  readonly local: (ip: string) => boolean;
  readonly ipFamily: IPFamily;
}

type End = { walk: Walk; verdict?: ExplainVerdict | 'return'; chain: string; reason?: string };

function inCIDR(ip: string, cidr: string): boolean {
  const [addr = '', len] = cidr.split('/');
  const v = isIP(addr);
  if (v === 0 || isIP(ip) !== v) return false;
  if (len === undefined) return ip === addr;
  const list = new BlockList();
  list.addSubnet(addr, Number(len), v === 4 ? 'ipv4' : 'ipv6');
  return list.check(ip, v === 4 ? 'ipv4' : 'ipv6');
}

const UNKNOWN = Symbol('unknown');

/** The value of an expression's left side for this packet. */
function valueOf(x: Json, w: Walk, c: Ctx): string | number | typeof UNKNOWN {
  if (x?.payload) {
    const f = x.payload.field;
    if (f === 'saddr') return c.packet.src;
    if (f === 'daddr') return w.dst;
    if (f === 'dport') return w.port;
  }
  if (x?.meta?.key === 'l4proto') return c.packet.protocol.toLowerCase();
  if (x?.meta?.key === 'mark') return w.masquerade ? 0x4000 : 0;
  if (x?.ct?.key === 'state') return 'new';
  if (x?.ct?.key === 'status') return w.dnat ? 'dnat' : 'none';
  if (x?.concat && Array.isArray(x.concat)) {
    const parts = (x.concat as Json[]).map((p) => valueOf(p, w, c));
    return parts.includes(UNKNOWN) ? UNKNOWN : parts.join(' . ');
  }
  if (x?.fib && (x.fib.flags ?? []).includes('saddr') && x.fib.result === 'type') return c.local(c.packet.src) ? 'local' : 'unicast';
  if (x?.fib && (x.fib.flags ?? []).includes('daddr') && x.fib.result === 'type') return c.local(w.dst) ? 'local' : 'unicast';
  if (x?.['&'] && Array.isArray(x['&'])) {
    const [l, r] = x['&'];
    const lv = valueOf(l, w, c);
    return typeof lv === 'number' && typeof r === 'number' ? lv & r : UNKNOWN;
  }
  return UNKNOWN;
}

/** Whether `value` is in the right side of a match: a literal, prefix, anonymous set or named set. */
function contains(right: Json, value: string | number, c: Ctx): boolean | 'affinity' | typeof UNKNOWN {
  if (typeof right === 'string' && right.startsWith('@')) {
    const name = right.slice(1);
    if (name.startsWith('affinity-')) return 'affinity';
    const set = c.table.sets.get(name);
    if (!set) return UNKNOWN;
    return set.some((e) => (typeof value === 'string' && e.includes('/') ? inCIDR(value, e) : String(e) === String(value)));
  }
  if (Array.isArray(right)) return right.some((r) => contains(r, value, c) === true);
  if (right?.set) return (right.set as Json[]).some((r) => contains(r, value, c) === true);
  if (right?.prefix) return typeof value === 'string' && inCIDR(value, `${right.prefix.addr}/${right.prefix.len}`);
  if (right?.range) return Number(value) >= Number(right.range[0]) && Number(value) <= Number(right.range[1]);
  if (typeof right === 'string' || typeof right === 'number') return String(right) === String(value);
  return UNKNOWN;
}

/** Looks a key up in a verdict map (named, or inline). */
interface Hit {
  readonly verdict: Json;
  /** The map element, for reasons; absent for a numgen branch. */
  readonly via?: string;
  /** The share of packets a numgen branch takes. */
  readonly share?: number;
}

function lookup(key: Json, data: Json, w: Walk, c: Ctx): Hit[] | typeof UNKNOWN {
  if (key?.numgen) {
    const entries = (data?.set ?? []) as Json[];
    const mod = Number(key.numgen.mod) || entries.length || 1;
    return entries.map(([, v]: Json[]) => ({ verdict: v, share: 1 / mod }));
  }
  const parts = key?.concat ? (key.concat as Json[]) : [key];
  const values = parts.map((p) => valueOf(p, w, c));
  if (values.some((v) => v === UNKNOWN)) return UNKNOWN;
  const name = typeof data === 'string' && data.startsWith('@') ? data.slice(1) : undefined;
  const elements: MapElement[] = name ? [...(c.table.maps.get(name) ?? [])] : ((data?.set ?? []) as Json[]).map(([k, v]: Json[]) => ({ key: keyParts(k), verdict: v }));
  const hit = elements.find((el) => el.key.length === values.length && el.key.every((k, i) => (typeof k === 'string' && k.includes('/') ? inCIDR(String(values[i]), k) : String(k) === String(values[i]))));
  if (!hit) return [];
  return [{ verdict: hit.verdict, via: `${name ? `@${name}` : 'map'}${hit.comment ? ` ${hit.comment}` : ''}` }];
}

function copy(w: Walk): Walk {
  return { ...w, steps: [...w.steps], unknown: [...w.unknown] };
}

function reasonFor(verdict: ExplainVerdict, chain: string, w: Walk, comment: string | undefined, c: Ctx): string {
  if (w.via?.startsWith(`@${NO_ENDPOINT_SERVICES_MAP}`) || w.via?.startsWith(`@${NO_ENDPOINT_NODEPORTS_MAP}`)) {
    return `${verdict === 'reject' ? 'no endpoints' : 'no local endpoints'} (${w.via.slice(1)})`;
  }
  if (chain.startsWith(FIREWALL_PREFIX)) return `source not in loadBalancerSourceRanges (${chain})`;
  if (chain === CLUSTER_IPS_CHECK_CHAIN) return verdict === 'reject' ? 'no Service port at this ClusterIP' : 'unallocated address in the Service CIDR';
  return comment ?? c.table.chains.get(chain)?.comment ?? `${verdict} in ${chain}`;
}

/** Runs `chain` for the packet; returns every way it can leave the chain. */
function runChain(name: string, w0: Walk, c: Ctx, depth: number): End[] {
  if (depth > 16) throw new Error(`nftables explain: jump loop through ${name}`);
  const chain = c.table.chains.get(name);
  w0.steps.push(name);
  let live: Walk[] = [w0];
  const ends: End[] = [];
  for (const rule of chain?.rules ?? []) {
    const next: Walk[] = [];
    for (const start of live) {
      // Each rule is evaluated expression by expression; a branch point forks the walk.
      let here: Walk[] = [start];
      for (const e of rule.expr) {
        const after: Walk[] = [];
        for (const w of here) {
          if (e.match?.left?.numgen) {
            // A fresh random number per evaluation: the rule is taken by the share of values it matches.
            const mod = Number(e.match.left.numgen.mod) || 1;
            const offset = Number(e.match.left.numgen.offset) || 0;
            let hits = 0;
            for (let n = offset; n < offset + mod; n++) if (contains(e.match.right, n, c) === true) hits++;
            const p = (e.match.op === '!=' ? mod - hits : hits) / mod;
            if (p > 0) {
              const taking = copy(w);
              taking.probability *= p;
              after.push(taking);
            }
            if (p < 1) {
              w.probability *= 1 - p;
              next.push(w);
            }
          } else if (e.match) {
            const v = valueOf(e.match.left, w, c);
            let m = v === UNKNOWN ? UNKNOWN : contains(e.match.right, v, c);
            if (m === 'affinity') {
              const pinned = copy(w);
              pinned.affinity = true;
              after.push(pinned);
              next.push(w);
              continue;
            }
            if (m === UNKNOWN) {
              w.unknown.push(`${name}: ${JSON.stringify(e.match)}`);
              after.push(copy(w));
              next.push(w);
              continue;
            }
            if (e.match.op === '!=') m = !m;
            if (m) after.push(w);
            else next.push(w);
          } else if (e.vmap) {
            const hits = lookup(e.vmap.key, e.vmap.data, w, c);
            if (hits === UNKNOWN) {
              w.unknown.push(`${name}: vmap ${JSON.stringify(e.vmap.key)}`);
              next.push(w);
              continue;
            }
            if (hits.length === 0) {
              next.push(w);
              continue;
            }
            for (const h of hits) {
              const b = copy(w);
              if (h.share !== undefined) b.probability *= h.share;
              if (h.via !== undefined) b.via = h.via;
              ends.push(...applyVerdict(h.verdict, name, b, c, depth, rule.comment, next));
            }
          } else if (e.mangle?.key?.meta?.key === 'mark') {
            // `mark ^ 0x4000` in the masquerading chain only clears the bit before `masquerade`.
            if (e.mangle.value?.['|']) w.masquerade = true;
            after.push(w);
          } else if (e.masquerade !== undefined) {
            // Upstream's masquerading rules masquerade in place (a marked packet, a hairpin connection).
            w.masquerade = true;
            ends.push({ walk: w, verdict: 'accept', chain: name });
          } else if (e.dnat) {
            // Through an endpoint map, each endpoint takes its share of the packets; the share of a
            // number the map lacks goes on to the next rule, as in the kernel.
            const targets = dnatTargets(e.dnat, c.table);
            const found = targets.filter((t): t is string => t !== undefined);
            for (const target of found) {
              const b = copy(w);
              b.probability *= 1 / targets.length;
              b.dnat = target;
              ends.push({ walk: b, verdict: 'accept', chain: name });
            }
            if (targets.length === 0) w.unknown.push(`${name}: dnat ${JSON.stringify(e.dnat)}`);
            if (found.length < targets.length || targets.length === 0) {
              w.probability *= targets.length === 0 ? 1 : (targets.length - found.length) / targets.length;
              next.push(w);
            }
          } else if (e.reject !== undefined || e.drop !== undefined || e.accept !== undefined) {
            const verdict: ExplainVerdict = e.reject !== undefined ? 'reject' : e.drop !== undefined ? 'drop' : 'accept';
            ends.push({ walk: w, verdict, chain: name, ...(verdict !== 'accept' ? { reason: reasonFor(verdict, name, w, rule.comment, c) } : {}) });
          } else if (e.jump || e.goto || e.return !== undefined) {
            ends.push(...applyVerdict(e, name, w, c, depth, rule.comment, next));
          } else {
            // counter, update (affinity), masquerade, log, ...: the packet goes on.
            after.push(w);
          }
        }
        here = after;
      }
      next.push(...here);
    }
    live = next;
  }
  for (const w of live) ends.push({ walk: w, chain: name });
  return ends;
}

/** A verdict (jump, goto, return, accept, drop, reject) taken in `chain`; a jump's fall-through goes on in `next`. */
function applyVerdict(v: Json, chain: string, w: Walk, c: Ctx, depth: number, comment: string | undefined, next: Walk[]): End[] {
  if (v?.jump) {
    const out: End[] = [];
    for (const end of runChain(v.jump.target, w, c, depth + 1)) {
      if (end.verdict === undefined || end.verdict === 'return') next.push(end.walk);
      else out.push(end);
    }
    return out;
  }
  if (v?.goto) return runChain(v.goto.target, w, c, depth + 1).map((e) => (e.verdict === 'return' ? { ...e, verdict: undefined } : e));
  if (v?.return !== undefined) return [{ walk: w, verdict: 'return', chain }];
  const verdict: ExplainVerdict | undefined = v?.reject !== undefined ? 'reject' : v?.drop !== undefined ? 'drop' : v?.accept !== undefined ? 'accept' : undefined;
  if (!verdict) {
    w.unknown.push(`${chain}: verdict ${JSON.stringify(v)}`);
    next.push(w);
    return [];
  }
  return [{ walk: w, verdict, chain, ...(verdict !== 'accept' ? { reason: reasonFor(verdict, chain, w, comment, c) } : {}) }];
}

/** Base chains of `hooks`, in the order the kernel runs them. */
function baseChains(table: NftTable, hooks: readonly string[]): string[] {
  return [...table.chains.values()]
    .filter((ch) => ch.hook !== undefined && hooks.includes(ch.hook))
    .sort((a, b) => hooks.indexOf(a.hook!) - hooks.indexOf(b.hook!) || a.prio! - b.prio!)
    .map((ch) => ch.name);
}

/** Walks `packet` through the base chains of its hooks (prerouting then input or forward; or output). */
export function nftablesExplain(table: NftTable, packet: ExplainPacket, localAddresses: readonly string[], ipFamily: IPFamily): Explanation {
  const local = (ip: string) => localAddresses.includes(ip) || ip.startsWith('127.') || ip === '::1';
  const c: Ctx = { table, packet, local, ipFamily };
  const fromNode = local(packet.src);
  let walks: { walk: Walk; verdict?: ExplainVerdict; reason?: string }[] = [
    { walk: { dst: packet.dst, port: packet.port, masquerade: false, probability: 1, affinity: false, steps: [], unknown: [] } },
  ];
  const runHooks = (hooks: readonly string[]) => {
    for (const chain of baseChains(table, hooks)) {
      const out: typeof walks = [];
      for (const x of walks) {
        if (x.verdict && x.verdict !== 'accept') {
          out.push(x);
          continue;
        }
        for (const end of runChain(chain, copy(x.walk), c, 0)) {
          const w = end.walk;
          if (w.dnat) {
            const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(w.dnat);
            if (m) {
              w.dst = m[1]!;
              w.port = Number(m[2]);
            }
          }
          const verdict = end.verdict === 'return' ? undefined : end.verdict;
          out.push({ walk: w, ...(verdict === 'drop' || verdict === 'reject' ? { verdict, ...(end.reason ? { reason: end.reason } : {}) } : {}) });
        }
      }
      walks = out;
    }
  };
  if (fromNode) {
    runHooks(['output']);
    runHooks(['postrouting']);
  } else {
    runHooks(['prerouting']);
    // Routing decides after DNAT: to this node (input) or onwards (forward).
    const onwards = walks.filter((x) => !local(x.walk.dst));
    walks = walks.filter((x) => local(x.walk.dst));
    runHooks(['input']);
    const toNode = walks;
    walks = onwards;
    runHooks(['forward']);
    runHooks(['postrouting']);
    walks = [...toNode, ...walks];
  }
  const paths: ExplainPath[] = walks.map(({ walk: w, verdict, reason }) => ({
    steps: w.steps,
    ...(w.dnat ? { endpoint: w.dnat } : {}),
    ...(w.affinity ? { affinity: true } : { probability: Math.round(w.probability * 1e6) / 1e6 }),
    masquerade: w.masquerade,
    verdict: verdict ?? 'accept',
    ...(reason ? { reason } : w.unknown.length > 0 ? { reason: `passes expressions the walker does not know: ${w.unknown.join('; ')}` } : {}),
  }));
  const servicePort = servicePortFromSteps(walks.flatMap((x) => [...x.walk.steps, x.walk.via ?? '']));
  return { mode: 'nftables', ipFamily, packet, ...(servicePort ? { servicePort } : {}), paths: mergePaths(paths) };
}

/** `ns/svc:port` from a service chain name (`service-HASH-ns/svc/tcp/port`) or a no-endpoint element's comment. */
function servicePortFromSteps(steps: readonly string[]): string | undefined {
  for (const s of steps) {
    const base = serviceBase(s);
    const m = base ? /^[A-Z2-7]{8}-([^/]+)\/([^/]+)\/[a-z]+\/(.*)$/.exec(base) : undefined;
    if (m) return m[3] ? `${m[1]}/${m[2]}:${m[3]}` : `${m[1]}/${m[2]}`;
    const via = /^@no-endpoint-\S+ (\S+)$/.exec(s);
    if (via) return via[1];
  }
  return undefined;
}

function mergePaths(paths: readonly ExplainPath[]): ExplainPath[] {
  const byKey = new Map<string, ExplainPath>();
  for (const p of paths) {
    const key = JSON.stringify({ ...p, probability: undefined });
    const seen = byKey.get(key);
    if (seen && p.probability !== undefined) byKey.set(key, { ...seen, probability: Math.round(((seen.probability ?? 0) + p.probability) * 1e6) / 1e6 });
    else if (!seen) byKey.set(key, p);
  }
  return [...byKey.values()];
}
