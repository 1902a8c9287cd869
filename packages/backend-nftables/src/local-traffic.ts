// How to tell pod traffic from other traffic, in nft syntax (upstream's LocalTrafficDetector
// IfLocalNFT / IfNotLocalNFT).

import type { IPFamily, NodeInfo, ProxyConfig } from '@kube-proxy-ts/core';
import { nftFamily } from './layout.js';

export interface LocalTrafficMatch {
  readonly ifLocal: string;
  readonly ifNotLocal: string;
}

/** undefined when the configured mode has nothing to match on (e.g. no cluster CIDR of this family). */
export function localTrafficMatch(config: ProxyConfig, ipFamily: IPFamily, node: NodeInfo): LocalTrafficMatch | undefined {
  const ipX = nftFamily(ipFamily);
  const ofFamily = (cidr: string): boolean => cidr.includes(':') === (ipFamily === 'IPv6');
  switch (config.detectLocalMode) {
    case 'ClusterCIDR': {
      const cidr = config.clusterCIDR.split(',').map((c) => c.trim()).find((c) => c !== '' && ofFamily(c));
      return cidr ? { ifLocal: `${ipX} saddr ${cidr}`, ifNotLocal: `${ipX} saddr != ${cidr}` } : undefined;
    }
    case 'NodeCIDR': {
      const cidr = node.podCIDRs.find(ofFamily);
      return cidr ? { ifLocal: `${ipX} saddr ${cidr}`, ifNotLocal: `${ipX} saddr != ${cidr}` } : undefined;
    }
    case 'BridgeInterface': {
      const name = config.detectLocal.bridgeInterface;
      return validInterface(name) ? { ifLocal: `iifname "${name}"`, ifNotLocal: `iifname != "${name}"` } : undefined;
    }
    case 'InterfaceNamePrefix': {
      const prefix = config.detectLocal.interfaceNamePrefix;
      return validInterface(prefix) ? { ifLocal: `iifname "${prefix}*"`, ifNotLocal: `iifname != "${prefix}*"` } : undefined;
    }
    default:
      return undefined;
  }
}

/** Interface names: 1-15 characters, none of them quote, slash, space or wildcard. */
function validInterface(name: string): boolean {
  return /^[A-Za-z0-9_.:@-]{1,15}$/.test(name);
}
