// Walks a packet through an iptables-save dump the way netfilter would: `kube-proxy explain` in
// iptables mode, and scenario tests that assert behaviour ("this client reaches these endpoints",
// "this one is rejected") instead of rule text. Probabilistic and `recent` matches are explored
// both ways, so the result lists every endpoint a packet can end at, with the share of new
// connections that reach it. Understands the matches and targets this backend writes; anything
// else throws (strict, for tests, so a test cannot pass by accident) or, for a live kernel whose
// built-in chains hold other programs' rules, is explored both ways and noted.

import { BlockList, isIP } from 'node:net';
import { formatRestoreLine, parseIptablesSave, splitRuleArgs, type SavedTable } from '@kube-proxy-ts/netfilter';
import { JUMP_RULES, KUBELET_FIREWALL_JUMPS } from './layout.js';

export interface TracePacket {
  readonly src: string;
  readonly dst: string;
  readonly protocol: 'tcp' | 'udp' | 'sctp';
  readonly dport: number;
  /** Interface the packet came in on (PREROUTING). */
  readonly inInterface?: string;
  /** PREROUTING (from the network, default) or OUTPUT (from a process on the node). */
  readonly hook?: 'PREROUTING' | 'OUTPUT';
}

export interface TraceOptions {
  /** The node's own addresses (addrtype LOCAL); loopback is always local. */
  readonly localAddresses: readonly string[];
  /** Explore rules it does not understand both ways instead of throwing. Default false. */
  readonly lenient?: boolean;
}

export interface TraceOutcome {
  /** Chains walked, in order, from the built-in chain on. */
  readonly path: readonly string[];
  /** `ip:port` the packet was DNATed to, if any. */
  readonly dnat?: string;
  /** The filter table's verdict on the (possibly DNATed) packet, if one of our chains decided. */
  readonly verdict?: 'ACCEPT' | 'DROP' | 'REJECT';
  /** KUBE-MARK-MASQ was reached: the packet will be masqueraded. */
  readonly masquerade: boolean;
  /** Share of new connections taking this outcome (statistic matches multiplied out). */
  readonly probability: number;
  /** Reached through a `recent --rcheck` rule: only a client pinned by session affinity goes this way. */
  readonly affinity: boolean;
  /** Comments of the rules that took the packet, in order. */
  readonly comments: readonly string[];
  /** Rules on the way that the tracer did not understand (lenient mode). */
  readonly unknown: readonly string[];
}

export interface TraceResult {
  readonly outcomes: readonly TraceOutcome[];
  /** Every chain walked on any path, nat then filter. */
  readonly chains: readonly string[];
  /** Sorted distinct DNAT targets. */
  readonly dnatTargets: readonly string[];
  /** Sorted distinct filter verdicts ("none" when no rule decided). */
  readonly verdicts: readonly string[];
}

interface Walk {
  path: string[];
  masquerade: boolean;
  probability: number;
  affinity: boolean;
  comments: string[];
  unknown: string[];
  dnat?: string;
  verdict?: 'ACCEPT' | 'DROP' | 'REJECT';
  /** How the walk left the chain: a final target, or RETURN; undefined = fell through. */
  end?: 'terminal' | 'return';
}

function inCIDR(ip: string, spec: string): boolean {
  const [address = '', prefix] = spec.split('/');
  const v = isIP(address);
  if (v === 0 || isIP(ip) !== v) return false;
  const type = v === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  if (prefix === undefined) list.addAddress(address, type);
  else list.addSubnet(address, Number(prefix), type);
  return list.check(ip, type);
}

function isLocal(ip: string, options: TraceOptions): boolean {
  return inCIDR(ip, '127.0.0.0/8') || ip === '::1' || options.localAddresses.includes(ip);
}

const TERMINAL = new Set(['ACCEPT', 'DROP', 'REJECT']);

type Packet = TracePacket & { dst: string; dport: number };

/** "Sometimes": a statistic match taken with `probability`, or a pinned client (`recent --rcheck`). */
interface Maybe {
  readonly probability: number;
  readonly affinity: boolean;
}

/** Match result of one rule: yes, no, or sometimes. */
function matches(args: readonly string[], packet: Packet, options: TraceOptions, walk: Walk): boolean | Maybe {
  let maybe: Maybe | undefined;
  let negate = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '!') {
      negate = true;
      continue;
    }
    const value = args[i + 1] ?? '';
    let ok: boolean;
    switch (a) {
      case '-s':
        ok = inCIDR(packet.src, value);
        i++;
        break;
      case '-d':
        ok = inCIDR(packet.dst, value);
        i++;
        break;
      case '-p':
        ok = value === packet.protocol;
        i++;
        break;
      case '-i':
        ok = value.endsWith('+') ? (packet.inInterface ?? '').startsWith(value.slice(0, -1)) : packet.inInterface === value;
        i++;
        break;
      case '--dport': {
        const [lo = '', hi] = value.split(':');
        ok = hi === undefined ? Number(lo) === packet.dport : packet.dport >= Number(lo) && packet.dport <= Number(hi);
        i++;
        break;
      }
      case '--dst-type':
        ok = value === 'LOCAL' ? isLocal(packet.dst, options) : false;
        i++;
        break;
      case '--src-type':
        ok = value === 'LOCAL' ? isLocal(packet.src, options) || packet.hook === 'OUTPUT' : false;
        i++;
        break;
      case '--ctstate': {
        const states = value.split(',');
        // A new connection; once DNATed the conntrack entry also carries the DNAT status.
        ok = states.includes('NEW') || (walk.dnat !== undefined && states.includes('DNAT'));
        i++;
        break;
      }
      case '--mark':
        ok = walk.masquerade;
        i++;
        break;
      case '-m':
        i++;
        continue;
      case '--probability':
        maybe = { probability: Number(value), affinity: maybe?.affinity ?? false };
        i++;
        continue;
      case '--rcheck':
        maybe = { probability: maybe?.probability ?? 1, affinity: true };
        continue;
      case '--set':
      case '--reap':
      case '--rsource':
        continue;
      case '--comment':
      case '--mode':
      case '--name':
      case '--seconds':
      case '--mask':
      case '--nfacct-name':
        i++;
        continue;
      default:
        if (!options.lenient) throw new Error(`packet tracer: unsupported match ${a} in: ${args.join(' ')}`);
        // Someone else's match: it may or may not hold for this packet.
        walk.unknown.push(args.join(' '));
        return { probability: 0.5, affinity: false };
    }
    if (negate) ok = !ok;
    negate = false;
    if (!ok) return false;
  }
  return maybe ?? true;
}

function commentOf(args: readonly string[]): string | undefined {
  return targetArg(args, '--comment');
}

function fork(w: Walk): Walk {
  return { ...w, path: [...w.path], comments: [...w.comments], unknown: [...w.unknown] };
}

function targetArg(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Walks `chain` of `table`; returns every way the walk can end (fall-through included). */
function walkChain(table: SavedTable, chain: string, packet: Packet, options: TraceOptions, walk: Walk, depth: number): Walk[] {
  if (depth > 32) throw new Error(`packet tracer: jump loop through ${chain}`);
  const rules = table.get(chain)?.rules ?? [];
  walk.path.push(chain);
  let live: Walk[] = [walk];
  const done: Walk[] = [];
  for (const rule of rules) {
    const args = splitRuleArgs(rule);
    const j = args.indexOf('-j');
    const matchArgs = j >= 0 ? args.slice(0, j) : args;
    const target = j >= 0 ? args[j + 1] : undefined;
    const next: Walk[] = [];
    for (const w of live) {
      const m = matches(matchArgs, packet, options, w);
      if (m === false || target === undefined) {
        next.push(w);
        continue;
      }
      // Sometimes: one copy takes the rule, the other goes on. A pinned client's copy keeps the
      // share of new connections where it was: affinity does not split them.
      let taking = w;
      if (m !== true) {
        taking = fork(w);
        if (m.affinity) taking.affinity = true;
        else {
          taking.probability = w.probability * m.probability;
          w.probability *= 1 - m.probability;
        }
        next.push(w);
      }
      const comment = commentOf(matchArgs);
      if (comment !== undefined) taking.comments.push(comment);
      const tArgs = args.slice(j + 2);
      if (target === 'RETURN') {
        done.push({ ...taking, end: 'return' });
      } else if (target === 'DNAT') {
        done.push({ ...taking, dnat: targetArg(tArgs, '--to-destination') ?? '?', end: 'terminal' });
      } else if (TERMINAL.has(target)) {
        done.push({ ...taking, verdict: target as Walk['verdict'], end: 'terminal' });
      } else if (target === 'MARK' || target === 'MASQUERADE') {
        next.push(taking);
      } else if (target === 'KUBE-MARK-MASQ') {
        taking.path.push(target);
        next.push({ ...taking, masquerade: true });
      } else if (table.has(target)) {
        for (const end of walkChain(table, target, packet, options, taking, depth + 1)) {
          if (end.end === 'terminal') done.push(end);
          else next.push({ ...end, end: undefined });
        }
      } else if (options.lenient) {
        // A target of another program (LOG, CT, ...): assume it lets the packet go on.
        taking.unknown.push(`${chain}: ${rule}`);
        next.push(taking);
      } else {
        throw new Error(`packet tracer: unknown target ${target} in chain ${chain}`);
      }
    }
    live = next;
  }
  return [...done, ...live];
}

/**
 * A restore payload has no built-in chains: give them the jumps a full sync inserts (each
 * prepended, so the last inserted comes first).
 */
function withBuiltinJumps(name: string, table: SavedTable | undefined): SavedTable | undefined {
  if (!table) return table;
  const out: SavedTable = new Map(table);
  for (const jump of [...JUMP_RULES, ...KUBELET_FIREWALL_JUMPS]) {
    if (jump.table !== name || !table.has(jump.to)) continue;
    const builtin = out.get(jump.from);
    if (builtin && table.has(jump.from)) continue; // the dump has its own
    const rules = builtin?.rules ?? [];
    out.set(jump.from, { name: jump.from, policy: 'ACCEPT', rules: [formatRestoreLine([...jump.args, '-j', jump.to]), ...rules] });
  }
  return out;
}

function walkBuiltin(table: SavedTable | undefined, builtin: string, packet: Packet, options: TraceOptions, start: Walk): Walk[] {
  if (!table) return [start];
  return walkChain(table, builtin, packet, options, start, 0);
}

/** Traces `packet` through the nat table (PREROUTING or OUTPUT), then the filter table. */
export function tracePacket(dump: string | ReadonlyMap<string, SavedTable>, packet: TracePacket, options: TraceOptions): TraceResult {
  const parsed = typeof dump === 'string' ? parseIptablesSave(dump) : dump;
  const tables = new Map([...parsed].map(([name, table]) => [name, withBuiltinJumps(name, table)!]));
  const hook = packet.hook ?? 'PREROUTING';
  const start: Walk = { path: [], masquerade: false, probability: 1, affinity: false, comments: [], unknown: [] };
  const natEnds = walkBuiltin(tables.get('nat'), hook, packet, options, start);
  const outcomes: TraceOutcome[] = [];
  const chains = new Set<string>();
  for (const end of natEnds) {
    let dst = packet.dst;
    let dport = packet.dport;
    if (end.dnat) {
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(end.dnat);
      if (m) {
        dst = m[1]!;
        dport = Number(m[2]);
      }
    }
    const after: Packet = { ...packet, dst, dport };
    const filterHook = hook === 'OUTPUT' ? 'OUTPUT' : isLocal(dst, options) ? 'INPUT' : 'FORWARD';
    const filterStart: Walk = { ...end, path: [], comments: [], unknown: [], ...(end.dnat ? { dnat: end.dnat } : {}) };
    delete filterStart.end;
    const filterEnds = walkBuiltin(tables.get('filter'), filterHook, after, options, filterStart);
    for (const f of filterEnds) {
      for (const c of end.path) chains.add(c);
      for (const c of f.path) chains.add(c);
      outcomes.push({
        path: [...end.path, ...f.path],
        masquerade: end.masquerade,
        probability: f.probability,
        affinity: f.affinity,
        comments: [...end.comments, ...f.comments],
        unknown: [...end.unknown, ...f.unknown],
        ...(end.dnat ? { dnat: end.dnat } : {}),
        ...(f.verdict ? { verdict: f.verdict } : {}),
      });
    }
  }
  return {
    outcomes,
    chains: [...chains],
    dnatTargets: [...new Set(outcomes.flatMap((o) => (o.dnat ? [o.dnat] : [])))].sort(),
    verdicts: [...new Set(outcomes.map((o) => o.verdict ?? 'none'))].sort(),
  };
}
