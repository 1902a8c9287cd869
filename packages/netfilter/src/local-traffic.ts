// Which packets come from pods on this node ("local traffic"). Backends masquerade ClusterIP
// traffic that is not local, and short-circuit local traffic to external addresses. The
// description is neutral; each backend renders it in its own rule language.

import { cidrFamilyOf, type IPFamily, type LocalMode, type NodeInfo, type ProxyConfig } from '@kube-proxy-ts/core';

export type LocalTrafficDetector =
  /** No way to tell: backends skip the rules that depend on it (as upstream's no-op detector). */
  | { readonly kind: 'none'; readonly reason: string }
  /** Source address inside the pod CIDR. */
  | { readonly kind: 'cidr'; readonly cidr: string }
  /** Arrives on the pod bridge. */
  | { readonly kind: 'interface'; readonly interfaceName: string }
  /** Arrives on an interface whose name starts with the prefix (veth-style pod interfaces). */
  | { readonly kind: 'interfacePrefix'; readonly prefix: string };

/** Builds the detector of `config.detectLocalMode` for one family. */
export function createLocalTrafficDetector(
  config: Pick<ProxyConfig, 'detectLocalMode' | 'clusterCIDR' | 'detectLocal'>,
  family: IPFamily,
  node: Pick<NodeInfo, 'podCIDRs'>,
): LocalTrafficDetector {
  const mode: LocalMode = config.detectLocalMode;
  switch (mode) {
    case 'ClusterCIDR': {
      const cidr = config.clusterCIDR.split(',').map((c) => c.trim()).find((c) => c !== '' && cidrFamilyOf(c) === family);
      return cidr ? { kind: 'cidr', cidr } : { kind: 'none', reason: `no ${family} clusterCIDR configured` };
    }
    case 'NodeCIDR': {
      const cidr = node.podCIDRs.find((c) => cidrFamilyOf(c) === family);
      return cidr ? { kind: 'cidr', cidr } : { kind: 'none', reason: `node has no ${family} podCIDR` };
    }
    case 'BridgeInterface': {
      const name = config.detectLocal.bridgeInterface;
      return name ? { kind: 'interface', interfaceName: name } : { kind: 'none', reason: 'detectLocal.bridgeInterface is empty' };
    }
    case 'InterfaceNamePrefix': {
      const prefix = config.detectLocal.interfaceNamePrefix;
      return prefix ? { kind: 'interfacePrefix', prefix } : { kind: 'none', reason: 'detectLocal.interfaceNamePrefix is empty' };
    }
    default:
      return { kind: 'none', reason: `unknown detectLocalMode ${String(mode)}` };
  }
}

/** iptables match arguments for "is local" (`negate` false) or "is not local"; [] for kind none. */
export function iptablesLocalMatch(detector: LocalTrafficDetector, negate: boolean): string[] {
  const not = negate ? ['!'] : [];
  switch (detector.kind) {
    case 'cidr':
      return [...not, '-s', detector.cidr];
    case 'interface':
      return [...not, '-i', detector.interfaceName];
    case 'interfacePrefix':
      return [...not, '-i', `${detector.prefix}+`];
    case 'none':
      return [];
  }
}

/** nftables match expression for "is local" / "is not local"; "" for kind none. */
export function nftablesLocalMatch(detector: LocalTrafficDetector, negate: boolean): string {
  const op = negate ? '!= ' : '';
  switch (detector.kind) {
    case 'cidr':
      return `${cidrFamilyOf(detector.cidr) === 'IPv6' ? 'ip6' : 'ip'} saddr ${op}${detector.cidr}`;
    case 'interface':
      return `iifname ${op}"${detector.interfaceName}"`;
    case 'interfacePrefix':
      return `iifname ${op}"${detector.prefix}*"`;
    case 'none':
      return '';
  }
}
