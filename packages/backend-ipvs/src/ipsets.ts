// The kernel names and specs of the IPVS ipsets (layout.ts) for one IP family.

import type { IPFamily } from '@kube-proxy-ts/core';
import type { IpsetSpec } from '@kube-proxy-ts/netfilter';
import { IPSETS } from './layout.js';

/**
 * The kernel name of a set for one family: IPv6 sets are `KUBE-6-...` (cut to ipset's 31
 * characters) so that both families' sets coexist, as upstream names them.
 */
export function ipsetName(key: string, family: IPFamily): string {
  if (family === 'IPv4' || !key.startsWith('KUBE-')) return key;
  return `KUBE-6-${key.slice('KUBE-'.length)}`.slice(0, 31);
}

/** The sets one family's backend owns. */
export function ipsetSpecs(family: IPFamily): (IpsetSpec & { key: string })[] {
  return IPSETS.map((s) => ({
    key: s.key,
    name: ipsetName(s.key, family),
    type: s.type,
    family,
    comment: s.comment,
  }));
}
