// The small, fixed iptables layer of IPVS mode: masquerade marks, hairpin, NodePort and
// load-balancer source-range handling and the access filters, all matching on ipsets so its
// size does not grow with the number of services. Written with one iptables-restore --noflush.

import type { IPFamily } from '@kube-proxy-ts/core';
import { hasJump, iptablesLocalMatch, isJumpRule, jumpRuleArgs, RestoreTableWriter, type IptablesTable, type LocalTrafficDetector, type SavedTable } from '@kube-proxy-ts/netfilter';
import { ipsetName } from './ipsets.js';
import * as S from './layout.js';
import {
  IPSETS,
  IPVS_CHAINS,
  JUMP_RULES,
  KUBE_FORWARD_CHAIN,
  KUBE_IPVS_FILTER_CHAIN,
  KUBE_IPVS_OUT_FILTER_CHAIN,
  KUBE_LOAD_BALANCER_CHAIN,
  KUBE_MARK_MASQ_CHAIN,
  KUBE_NODE_PORT_CHAIN,
  KUBE_POSTROUTING_CHAIN,
  KUBE_PROXY_FIREWALL_CHAIN,
  KUBE_SERVICES_CHAIN,
  KUBE_SOURCE_RANGES_FIREWALL_CHAIN,
  masqueradeMark,
} from './layout.js';

/** The ipset rules upstream generates from a table, in order, when the set is not empty. */
const IPSET_RULES: readonly { set: string; table: 'nat' | 'filter'; from: string; to: string; match: string; protocol?: string }[] = [
  { set: S.KUBE_LOOP_BACK, table: 'nat', from: KUBE_POSTROUTING_CHAIN, to: 'MASQUERADE', match: 'dst,dst,src' },
  { set: S.KUBE_LOAD_BALANCER, table: 'nat', from: KUBE_SERVICES_CHAIN, to: KUBE_LOAD_BALANCER_CHAIN, match: 'dst,dst' },
  { set: S.KUBE_LOAD_BALANCER_LOCAL, table: 'nat', from: KUBE_LOAD_BALANCER_CHAIN, to: 'RETURN', match: 'dst,dst' },
  { set: S.KUBE_NODE_PORT_LOCAL_TCP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: 'RETURN', match: 'dst', protocol: 'tcp' },
  { set: S.KUBE_NODE_PORT_TCP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: KUBE_MARK_MASQ_CHAIN, match: 'dst', protocol: 'tcp' },
  { set: S.KUBE_NODE_PORT_LOCAL_UDP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: 'RETURN', match: 'dst', protocol: 'udp' },
  { set: S.KUBE_NODE_PORT_UDP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: KUBE_MARK_MASQ_CHAIN, match: 'dst', protocol: 'udp' },
  { set: S.KUBE_NODE_PORT_LOCAL_SCTP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: 'RETURN', match: 'dst,dst', protocol: 'sctp' },
  { set: S.KUBE_NODE_PORT_SCTP, table: 'nat', from: KUBE_NODE_PORT_CHAIN, to: KUBE_MARK_MASQ_CHAIN, match: 'dst,dst', protocol: 'sctp' },
  { set: S.KUBE_LOAD_BALANCER_FW, table: 'filter', from: KUBE_PROXY_FIREWALL_CHAIN, to: KUBE_SOURCE_RANGES_FIREWALL_CHAIN, match: 'dst,dst' },
  { set: S.KUBE_LOAD_BALANCER_SOURCE_CIDR, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL_CHAIN, to: 'RETURN', match: 'dst,dst,src' },
  { set: S.KUBE_LOAD_BALANCER_SOURCE_IP, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL_CHAIN, to: 'RETURN', match: 'dst,dst,src' },
];

export interface IptablesLayerInputs {
  readonly family: IPFamily;
  /** Bit of the masquerade mark (config.iptables.masqueradeBit). */
  readonly masqueradeBit: number;
  readonly masqueradeAll: boolean;
  /** MASQUERADE --random-fully (iptables >= 1.6.2). */
  readonly randomFully: boolean;
  readonly localDetector: LocalTrafficDetector;
  /** Keys of ipsets that hold at least one entry. */
  readonly nonEmptySets: ReadonlySet<string>;
  readonly lbNoNodeAccess: readonly { readonly ip: string; readonly protocol: string; readonly port: number }[];
  /** The built-in chains as saved, to add only the jumps that are missing. */
  readonly saved: ReadonlyMap<string, SavedTable>;
}

const comment = (key: string) => IPSETS.find((s) => s.key === key)!.comment;

export function buildIptablesLayer(inputs: IptablesLayerInputs): { payload: string; jumpsAdded: number } {
  const { family } = inputs;
  const name = (key: string) => ipsetName(key, family);
  const nonEmpty = (key: string) => inputs.nonEmptySets.has(key);
  const mark = masqueradeMark(inputs.masqueradeBit);
  const nat = new RestoreTableWriter('nat');
  const filter = new RestoreTableWriter('filter');
  const tables: Record<'nat' | 'filter', RestoreTableWriter> = { nat, filter };
  for (const chain of IPVS_CHAINS.nat) nat.declareChain(chain);
  for (const chain of IPVS_CHAINS.filter) filter.declareChain(chain);

  let jumpsAdded = 0;
  for (const j of JUMP_RULES) {
    if (hasJump(inputs.saved.get(j.table)?.get(j.from)?.rules ?? [], j)) continue;
    // IPVS mode's jumps are all in nat and filter.
    tables[j.table as 'nat' | 'filter'].insertRule(j.from, jumpRuleArgs(j), 1);
    jumpsAdded++;
  }

  nat.appendRule(KUBE_SERVICES_CHAIN, ['-s', family === 'IPv6' ? '::1/128' : '127.0.0.0/8', '-j', 'RETURN']);
  for (const r of IPSET_RULES) {
    if (!nonEmpty(r.set)) continue;
    const proto = r.protocol ? ['-p', r.protocol] : [];
    tables[r.table].appendRule(r.from, [...proto, '-m', 'comment', '--comment', comment(r.set), '-m', 'set', '--match-set', name(r.set), r.match, '-j', r.to]);
  }

  if (nonEmpty(S.KUBE_CLUSTER_IP)) {
    const match = ['-m', 'comment', '--comment', comment(S.KUBE_CLUSTER_IP), '-m', 'set', '--match-set', name(S.KUBE_CLUSTER_IP)];
    if (inputs.masqueradeAll) nat.appendRule(KUBE_SERVICES_CHAIN, [...match, 'dst,dst', '-j', KUBE_MARK_MASQ_CHAIN]);
    else if (inputs.localDetector.kind !== 'none') nat.appendRule(KUBE_SERVICES_CHAIN, [...match, 'dst,dst', ...iptablesLocalMatch(inputs.localDetector, true), '-j', KUBE_MARK_MASQ_CHAIN]);
    // Without a way to tell pod traffic, masquerade node-originated traffic whose source is a VIP.
    else nat.appendRule(KUBE_SERVICES_CHAIN, [...match, 'src,dst', '-j', KUBE_MARK_MASQ_CHAIN]);
  }

  const externalIPRules = (match: string[]) => {
    // Traffic from off the machine (not bridged from a pod, not locally sourced), and traffic
    // to external IPs the node itself holds, goes on to IPVS.
    nat.appendRule(KUBE_SERVICES_CHAIN, [...match, '-m', 'physdev', '!', '--physdev-is-in', '-m', 'addrtype', '!', '--src-type', 'LOCAL', '-j', 'ACCEPT']);
    nat.appendRule(KUBE_SERVICES_CHAIN, [...match, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'ACCEPT']);
  };
  for (const key of [S.KUBE_EXTERNAL_IP, S.KUBE_EXTERNAL_IP_LOCAL]) {
    if (!nonEmpty(key)) continue;
    const match = ['-m', 'comment', '--comment', comment(key), '-m', 'set', '--match-set', name(key), 'dst,dst'];
    if (key === S.KUBE_EXTERNAL_IP) nat.appendRule(KUBE_SERVICES_CHAIN, [...match, '-j', KUBE_MARK_MASQ_CHAIN]);
    externalIPRules(match);
  }

  nat.appendRule(KUBE_SERVICES_CHAIN, ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', KUBE_NODE_PORT_CHAIN]);
  nat.appendRule(KUBE_LOAD_BALANCER_CHAIN, ['-j', KUBE_MARK_MASQ_CHAIN]);
  filter.appendRule(KUBE_SOURCE_RANGES_FIREWALL_CHAIN, ['-j', 'DROP']);

  for (const e of inputs.lbNoNodeAccess) {
    filter.appendRule(KUBE_IPVS_OUT_FILTER_CHAIN, ['-s', e.ip, '-m', 'ipvs', '--vaddr', e.ip, '--vproto', e.protocol, '--vport', String(e.port), '-j', 'DROP']);
  }

  // Accept traffic to virtual services before anything else in the table can drop it.
  for (const key of [S.KUBE_CLUSTER_IP, S.KUBE_LOAD_BALANCER]) {
    if (nonEmpty(key)) nat.appendRule(KUBE_SERVICES_CHAIN, ['-m', 'set', '--match-set', name(key), 'dst,dst', '-j', 'ACCEPT']);
  }

  filter.appendRule(KUBE_FORWARD_CHAIN, ['-m', 'comment', '--comment', 'kubernetes forwarding rules', '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT']);
  filter.appendRule(KUBE_FORWARD_CHAIN, ['-m', 'comment', '--comment', 'kubernetes forwarding conntrack rule', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  filter.appendRule(KUBE_NODE_PORT_CHAIN, ['-m', 'comment', '--comment', comment(S.KUBE_HEALTH_CHECK_NODE_PORT), '-m', 'set', '--match-set', name(S.KUBE_HEALTH_CHECK_NODE_PORT), 'dst', '-j', 'ACCEPT']);

  // Service addresses accept only service ports: anything else NEW to them is rejected, so the
  // node's own listeners are not reachable through a VIP.
  for (const key of [S.KUBE_LOAD_BALANCER, S.KUBE_CLUSTER_IP, S.KUBE_EXTERNAL_IP, S.KUBE_EXTERNAL_IP_LOCAL]) {
    filter.appendRule(KUBE_IPVS_FILTER_CHAIN, ['-m', 'set', '--match-set', name(key), 'dst,dst', '-j', 'RETURN']);
  }
  filter.appendRule(KUBE_IPVS_FILTER_CHAIN, ['-m', 'set', '--match-set', name(S.KUBE_HEALTH_CHECK_NODE_PORT), 'dst', '-j', 'RETURN']);
  filter.appendRule(KUBE_IPVS_FILTER_CHAIN, ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'set', '--match-set', name(S.KUBE_IPVS_IPS), 'dst', '-j', 'REJECT']);

  nat.appendRule(KUBE_POSTROUTING_CHAIN, ['-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN']);
  nat.appendRule(KUBE_POSTROUTING_CHAIN, ['-j', 'MARK', '--xor-mark', mark]);
  nat.appendRule(KUBE_POSTROUTING_CHAIN, ['-m', 'comment', '--comment', 'kubernetes service traffic requiring SNAT', '-j', 'MASQUERADE', ...(inputs.randomFully ? ['--random-fully'] : [])]);
  nat.appendRule(KUBE_MARK_MASQ_CHAIN, ['-j', 'MARK', '--or-mark', mark]);

  return { payload: `${nat.toString()}${filter.toString()}`, jumpsAdded };
}

/** The payload that removes our jumps and chains (only those present in `saved`). */
export function buildIptablesCleanup(saved: ReadonlyMap<string, SavedTable>): string {
  let payload = '';
  for (const table of ['nat', 'filter'] as const) {
    const t = saved.get(table);
    if (!t) continue;
    const w = new RestoreTableWriter(table as IptablesTable);
    for (const j of JUMP_RULES) {
      if (j.table !== table) continue;
      for (const rule of t.get(j.from)?.rules ?? []) {
        if (isJumpRule(rule, j)) w.deleteRule(j.from, rule);
      }
    }
    for (const chain of IPVS_CHAINS[table]) if (t.has(chain)) w.deleteChain(chain);
    if (!w.isEmpty()) payload += w.toString();
  }
  return payload;
}
