// The fixed part of upstream's iptables layout: top-level chain names, the jumps into them from
// the built-in chains, and the formatting of values upstream prints in a particular way.

import { jumpRule, type IptablesTable, type JumpRule } from '@kube-proxy-ts/netfilter';

export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
export const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
export const KUBE_PROXY_CANARY = 'KUBE-PROXY-CANARY';
/** A twin of kubelet's chain holding only the anti-martian rule for localhost node ports. */
export const KUBE_FIREWALL = 'KUBE-FIREWALL';
/** kubelet's canary: when present, kubelet also owns KUBE-FIREWALL and cleanup leaves it. */
export const KUBE_KUBELET_CANARY = 'KUBE-KUBELET-CANARY';

/** Upstream's switch to "large cluster mode": no per-endpoint comments, fewer bytes to restore. */
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

/** Upstream forces a full sync at least this often. */
export const FULL_SYNC_PERIOD_MS = 3600_000;

/** Upstream's argument order: the target chain first, then the built-in chain. */
function jump(table: IptablesTable, to: string, from: string, comment: string, extra: readonly string[] = []): JumpRule {
  return jumpRule(table, from, to, comment, extra);
}

const NEW = ['-m', 'conntrack', '--ctstate', 'NEW'];

/** The jumps upstream ensures (by prepending) on every full sync, in upstream's order. */
export const JUMP_RULES: readonly JumpRule[] = [
  jump('filter', KUBE_EXTERNAL_SERVICES, 'INPUT', 'kubernetes externally-visible service portals', NEW),
  jump('filter', KUBE_EXTERNAL_SERVICES, 'FORWARD', 'kubernetes externally-visible service portals', NEW),
  jump('filter', KUBE_NODEPORTS, 'INPUT', 'kubernetes health check service ports'),
  jump('filter', KUBE_SERVICES, 'FORWARD', 'kubernetes service portals', NEW),
  jump('filter', KUBE_SERVICES, 'OUTPUT', 'kubernetes service portals', NEW),
  jump('filter', KUBE_FORWARD, 'FORWARD', 'kubernetes forwarding rules'),
  jump('filter', KUBE_PROXY_FIREWALL, 'INPUT', 'kubernetes load balancer firewall', NEW),
  jump('filter', KUBE_PROXY_FIREWALL, 'OUTPUT', 'kubernetes load balancer firewall', NEW),
  jump('filter', KUBE_PROXY_FIREWALL, 'FORWARD', 'kubernetes load balancer firewall', NEW),
  jump('nat', KUBE_SERVICES, 'OUTPUT', 'kubernetes service portals'),
  jump('nat', KUBE_SERVICES, 'PREROUTING', 'kubernetes service portals'),
  jump('nat', KUBE_POSTROUTING, 'POSTROUTING', 'kubernetes postrouting rules'),
];

/** kubelet's duplicates, ensured only while localhost node ports are on (IPv4). */
export const KUBELET_FIREWALL_JUMPS: readonly JumpRule[] = [
  jump('filter', KUBE_FIREWALL, 'INPUT', ''),
  jump('filter', KUBE_FIREWALL, 'OUTPUT', ''),
];

/** The mark as upstream prints it (Go's `%#08x`): 1<<14 is `0x004000`. */
export function masqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`masqueradeBit ${bit} is outside 0..31`);
  return `0x${(2 ** bit).toString(16).padStart(6, '0')}`;
}

const probabilityCache: string[] = [];

/**
 * 1/n with ten decimals, as Go's `%0.10f` prints it: correctly rounded, ties to even (JS's
 * toFixed breaks exact ties upwards, which shows from n = 2048 on).
 */
export function probability(n: number): string {
  const cached = probabilityCache[n];
  if (cached !== undefined) return cached;
  const x = 1 / n;
  let text = x.toFixed(10);
  const longer = x.toFixed(30);
  // An exact tie: the 11th decimal is 5 and nothing follows it.
  if (/^0\.\d{10}50*$/.test(longer)) {
    const truncated = longer.slice(0, 12);
    const lastDigit = Number(truncated.at(-1));
    if (lastDigit % 2 === 0) text = truncated;
  }
  probabilityCache[n] = text;
  return text;
}
