// Local addresses as `ip -j addr show` lists them: which ones kube-ipvs0 holds, and which ones
// other interfaces hold (node addresses, never to be taken over).

import type { IPFamily } from '@kube-proxy-ts/core';
import { DUMMY_DEVICE } from './layout.js';

interface IpAddrJson {
  ifname?: string;
  addr_info?: { family?: string; local?: string }[];
}

export interface LocalAddresses {
  readonly dummyExists: boolean;
  /** Addresses of this family on kube-ipvs0. */
  readonly bound: ReadonlySet<string>;
  /** Addresses of this family on every other interface. */
  readonly node: readonly string[];
}

export function parseLocalAddresses(json: string, family: IPFamily): LocalAddresses {
  const links = JSON.parse(json.trim() === '' ? '[]' : json) as IpAddrJson[];
  const want = family === 'IPv6' ? 'inet6' : 'inet';
  let dummyExists = false;
  const bound = new Set<string>();
  const node: string[] = [];
  for (const link of links) {
    const isDummy = link.ifname === DUMMY_DEVICE;
    if (isDummy) dummyExists = true;
    for (const a of link.addr_info ?? []) {
      if (a.family !== want || !a.local) continue;
      if (isDummy) bound.add(a.local);
      else node.push(a.local);
    }
  }
  return { dummyExists, bound, node };
}

/** `ip -batch` lines that make kube-ipvs0 hold exactly `want` (of this family). */
export function addressBatch(have: ReadonlySet<string>, want: ReadonlySet<string>, family: IPFamily): { payload: string; added: number; removed: number } {
  const bits = family === 'IPv6' ? 128 : 32;
  // IPv6 service addresses must be usable at once: no duplicate address detection.
  const extra = family === 'IPv6' ? ' nodad' : '';
  const lines: string[] = [];
  let added = 0;
  let removed = 0;
  for (const ip of want) {
    if (have.has(ip)) continue;
    lines.push(`address add ${ip}/${bits} dev ${DUMMY_DEVICE}${extra}`);
    added++;
  }
  for (const ip of have) {
    if (want.has(ip)) continue;
    lines.push(`address del ${ip}/${bits} dev ${DUMMY_DEVICE}`);
    removed++;
  }
  return { payload: lines.length ? `${lines.join('\n')}\n` : '', added, removed };
}
