// IPVS mode needs no canary: every sync reads the kernel (virtual services, kube-ipvs0, ipsets,
// the iptables layer) and writes the difference, so a virtual server or an address removed by
// hand is put back by the next sync, the periodic one at the latest. What it lacked is telling:
// a sync that finds gone what the last successful sync left in place logs it and counts it.

import { virtualServerKey, type IpvsServiceListing } from '@kube-proxy-ts/netfilter';
import type { BackendContext, IPFamily } from '@kube-proxy-ts/core';
import type { LocalAddresses } from './kernel-addresses.js';
import { countDrift } from './metrics.js';

/** What a successful sync left in the kernel. */
export interface AppliedIpvs {
  readonly virtualServices: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
}

export interface IpvsDrift {
  readonly virtualServices: readonly string[];
  readonly addresses: readonly string[];
  readonly dummyDevice: boolean;
}

/** What of `applied` the kernel no longer holds; undefined when nothing is missing. */
export function findDrift(applied: AppliedIpvs, kernel: { readonly ipvs: readonly IpvsServiceListing[]; readonly addresses: LocalAddresses }): IpvsDrift | undefined {
  const present = new Set(kernel.ipvs.map((l) => virtualServerKey(l.service)));
  const virtualServices = [...applied.virtualServices].filter((k) => !present.has(k)).sort();
  const addresses = [...applied.addresses].filter((a) => !kernel.addresses.bound.has(a)).sort();
  const dummyDevice = !kernel.addresses.dummyExists && applied.addresses.size > 0;
  return virtualServices.length + addresses.length > 0 || dummyDevice ? { virtualServices, addresses, dummyDevice } : undefined;
}

/** Logs and counts drift found against the last successful sync (none after a failed one). */
export function reportDrift(
  ctx: BackendContext,
  ipFamily: IPFamily,
  applied: AppliedIpvs | undefined,
  kernel: Parameters<typeof findDrift>[1],
): void {
  const drift = applied && findDrift(applied, kernel);
  if (!drift) return;
  const sample = (list: readonly string[]) => list.slice(0, 10);
  ctx.logger.warn(
    {
      ipFamily,
      virtualServices: drift.virtualServices.length,
      addresses: drift.addresses.length,
      dummyDeviceDeleted: drift.dummyDevice,
      examples: [...sample(drift.virtualServices), ...sample(drift.addresses)],
    },
    'IPVS virtual servers or kube-ipvs0 addresses removed outside kube-proxy; restoring',
  );
  countDrift(ctx.metrics, ipFamily);
}
