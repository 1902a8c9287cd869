// `kube-proxy inspect` and `explain` in iptables mode: one iptables-save dump, indexed by the
// chain hashes of upstream's layout (so it works without comments, as large clusters have none),
// and the packet tracer walking the same dump.

import {
  emptyKernelServicePortView,
  finishKernelServicePortView,
  frontend,
  nodePortFrontend,
  servicePortNameString,
  type ExplainPacket,
  type Explanation,
  type ExplainPath,
  type IPFamily,
  type KernelServicePortView,
  type KernelView,
  type CommandRunner,
  type Protocol,
  type ServicePort,
} from '@kube-proxy-ts/core';
import {
  ENDPOINT_CHAIN_PREFIX,
  isServiceChainName,
  parseIptablesSave,
  servicePortChainNames,
  splitRuleArgs,
  type SavedTable,
} from '@kube-proxy-ts/netfilter';
import { KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_SERVICES } from './layout.js';
import { tracePacket } from './packet-tracer.js';

interface ParsedRule {
  readonly chain: string;
  readonly dst: string | undefined;
  readonly protocol: Protocol | undefined;
  readonly dport: number | undefined;
  readonly dstLocal: boolean;
  readonly target: string | undefined;
  readonly toDestination: string | undefined;
  readonly comment: string | undefined;
}

function argAfter(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function parseRule(chain: string, rule: string): ParsedRule {
  const args = splitRuleArgs(rule);
  const dst = argAfter(args, '-d')?.replace(/\/(32|128)$/, '');
  const p = argAfter(args, '-p')?.toUpperCase();
  const dport = argAfter(args, '--dport');
  return {
    chain,
    dst,
    protocol: p === 'TCP' || p === 'UDP' || p === 'SCTP' ? p : undefined,
    dport: dport !== undefined && /^\d+$/.test(dport) ? Number(dport) : undefined,
    dstLocal: argAfter(args, '--dst-type') === 'LOCAL',
    target: argAfter(args, '-j'),
    toDestination: argAfter(args, '--to-destination'),
    comment: argAfter(args, '--comment'),
  };
}

/** The frontend a dispatch or block rule is about: an address and port, or a node port. */
function ruleFrontend(r: ParsedRule, nodePortChain: boolean): string | undefined {
  if (!r.protocol || r.dport === undefined) return undefined;
  // In KUBE-NODEPORTS a destination only narrows the local addresses (127.0.0.0/8 has a rule of its own).
  if (nodePortChain || (r.dst === undefined && r.dstLocal)) return nodePortFrontend(r.dport, r.protocol);
  if (r.dst !== undefined && !r.dst.includes('/')) return frontend(r.dst, r.dport, r.protocol);
  return undefined;
}

const hashOf = (chain: string) => chain.slice(chain.lastIndexOf('-') + 1);

const BLOCK_TARGETS = new Set(['REJECT', 'DROP']);

/**
 * What the kernel holds for each of `servicePorts`, from an iptables-save dump of nat and filter.
 * Each table is scanned once; per-service work is lookups.
 */
export function iptablesKernelView(tables: ReadonlyMap<string, SavedTable>, servicePorts: readonly ServicePort[], ipFamily: IPFamily): KernelView {
  const nat = tables.get('nat') ?? new Map();
  const filter = tables.get('filter') ?? new Map();

  // chain hash -> frontends dispatched to that service port's chains
  const dispatched = new Map<string, Set<string>>();
  const addDispatch = (hash: string, f: string) => {
    let s = dispatched.get(hash);
    if (!s) dispatched.set(hash, (s = new Set()));
    s.add(f);
  };
  for (const name of [KUBE_SERVICES, KUBE_NODEPORTS]) {
    for (const rule of nat.get(name)?.rules ?? []) {
      const r = parseRule(name, rule);
      if (!r.target || !isServiceChainName(r.target)) continue;
      const f = ruleFrontend(r, name === KUBE_NODEPORTS);
      if (f) addDispatch(hashOf(r.target), f);
    }
  }
  // frontend -> filter rules refusing it
  const blocks = new Map<string, string[]>();
  for (const name of [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]) {
    for (const rule of filter.get(name)?.rules ?? []) {
      const r = parseRule(name, rule);
      if (!r.target || !BLOCK_TARGETS.has(r.target)) continue;
      const f = ruleFrontend(r, false);
      if (!f) continue;
      const list = blocks.get(f) ?? [];
      list.push(`${f} ${r.target.toLowerCase()}: ${r.comment ?? `filter ${name}`}`);
      blocks.set(f, list);
    }
  }

  const owned = new Set<string>();
  const endpointsOf = (chain: string, into: string[], objects: string[]) => {
    for (const rule of nat.get(chain)?.rules ?? []) {
      const r = parseRule(chain, rule);
      if (!r.target?.startsWith(ENDPOINT_CHAIN_PREFIX) || owned.has(`${chain}>${r.target}`)) continue;
      owned.add(`${chain}>${r.target}`);
      owned.add(r.target);
      objects.push(`nat ${r.target}`);
      for (const sepRule of nat.get(r.target)?.rules ?? []) {
        const dest = parseRule(r.target, sepRule).toDestination;
        if (dest) into.push(dest);
      }
    }
  };

  const result: Record<string, KernelServicePortView> = {};
  for (const sp of servicePorts) {
    const names = servicePortChainNames(servicePortNameString(sp.name), sp.protocol);
    const hash = hashOf(names.clusterPolicy);
    const v = emptyKernelServicePortView();
    v.frontends.push(...(dispatched.get(hash) ?? []));
    for (const chain of [names.clusterPolicy, names.localPolicy, names.external, names.firewall]) {
      if (!nat.has(chain)) continue;
      owned.add(chain);
      v.objects.push(`nat ${chain}`);
    }
    endpointsOf(names.clusterPolicy, v.endpoints, v.objects);
    endpointsOf(names.localPolicy, v.endpoints, v.objects);
    // Blocks are found by destination: the desired frontends, and those the kernel dispatches.
    const candidates = new Set([sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs].map((ip) => frontend(ip, sp.port, sp.protocol)));
    if (sp.nodePort !== 0) candidates.add(nodePortFrontend(sp.nodePort, sp.protocol));
    for (const f of v.frontends) candidates.add(f);
    const nameString = servicePortNameString(sp.name);
    for (const f of candidates) {
      for (const b of blocks.get(f) ?? []) {
        // A block rule names its service port in its comment; without one (or another's) it is not ours to claim.
        if (!b.includes(`: ${nameString} `)) continue;
        v.blocked.push(b);
        v.frontends.push(f);
      }
    }
    result[sp.key] = finishKernelServicePortView(v);
  }

  const unowned = [...nat.keys()].filter((c) => isServiceChainName(c) && !owned.has(c)).map((c) => `nat ${c}`).sort();
  return { mode: 'iptables', ipFamily, servicePorts: result, unowned };
}

const COMMENT_SUFFIXES = [' cluster IP', ' loadbalancer IP', ' external IP', ' has no endpoints', ' has no local endpoints'];

/** The service port a trace met: the comment of the first rule of ours that names one. */
function servicePortFromComments(comments: readonly string[]): string | undefined {
  for (const c of comments) {
    if (c.startsWith('kubernetes ')) continue;
    const suffix = COMMENT_SUFFIXES.find((s) => c.endsWith(s));
    const name = suffix ? c.slice(0, -suffix.length) : c;
    if (/^[^/ ]+\/[^ ]+$/.test(name)) return name;
  }
  return undefined;
}

/** Walks `packet` through an iptables-save dump of nat and filter. */
export function iptablesExplain(
  tables: ReadonlyMap<string, SavedTable>,
  packet: ExplainPacket,
  localAddresses: readonly string[],
  ipFamily: IPFamily,
): Explanation {
  const isLocalSource = localAddresses.includes(packet.src) || packet.src.startsWith('127.') || packet.src === '::1';
  const trace = tracePacket(
    tables,
    { src: packet.src, dst: packet.dst, dport: packet.port, protocol: packet.protocol.toLowerCase() as 'tcp' | 'udp' | 'sctp', hook: isLocalSource ? 'OUTPUT' : 'PREROUTING' },
    { localAddresses, lenient: true },
  );
  const paths: ExplainPath[] = trace.outcomes.map((o) => {
    const verdict = o.verdict === 'DROP' ? 'drop' : o.verdict === 'REJECT' ? 'reject' : 'accept';
    const blockComment = verdict === 'accept' ? undefined : o.comments.at(-1);
    return {
      steps: o.path,
      ...(o.dnat ? { endpoint: o.dnat } : {}),
      ...(o.affinity ? { affinity: true } : { probability: round(o.probability) }),
      masquerade: o.masquerade,
      verdict,
      ...(verdict !== 'accept' ? { reason: blockComment ?? `${o.verdict} in ${o.path.at(-1) ?? '?'}` } : {}),
      ...(o.unknown.length > 0 ? { reason: `passes rules not written by kube-proxy: ${o.unknown.join('; ')}` } : {}),
    };
  });
  const servicePort = servicePortFromComments(trace.outcomes.flatMap((o) => o.comments));
  return { mode: 'iptables', ipFamily, packet, ...(servicePort ? { servicePort } : {}), paths: mergeSamePaths(paths) };
}

function round(p: number): number {
  return Math.round(p * 1e6) / 1e6;
}

/** Outcomes that differ only by a branch not taken (e.g. a statistic rule falling through) are one path. */
export function mergeSamePaths(paths: readonly ExplainPath[]): ExplainPath[] {
  const byKey = new Map<string, ExplainPath>();
  for (const p of paths) {
    if (!p.affinity && p.probability === 0) continue;
    const key = JSON.stringify({ ...p, probability: undefined });
    const seen = byKey.get(key);
    if (seen && p.probability !== undefined) byKey.set(key, { ...seen, probability: round((seen.probability ?? 0) + p.probability) });
    else if (!seen) byKey.set(key, p);
  }
  return [...byKey.values()];
}

/** nat and filter as the kernel holds them now: one iptables-save per table. */
export async function saveTablesForInspection(runner: CommandRunner, saveCommand: string, timeoutMs: number): Promise<Map<string, SavedTable>> {
  const tables = new Map<string, SavedTable>();
  for (const table of ['nat', 'filter']) {
    const r = await runner.run(saveCommand, ['-t', table], { timeoutMs });
    if (r.code !== 0) throw new Error(`${saveCommand} -t ${table} failed: ${r.stderr.trim()}`);
    tables.set(table, parseIptablesSave(r.stdout).get(table) ?? new Map());
  }
  return tables;
}
