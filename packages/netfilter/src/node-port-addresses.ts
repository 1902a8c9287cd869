// nodePortAddresses: which local addresses accept NodePort traffic: CIDRs of this family, or
// "primary" for the node's primary IP. Unset means every local address, except in nftables mode,
// where upstream treats it as "primary".

import { BlockList, isIPv4 } from 'node:net';
import { cidrFamilyOf, ipFamilyOf, type CommandRunner, type IPFamily, type Logger } from '@kube-proxy-ts/core';

export interface NodePortAddresses {
  /** No CIDR of this family: NodePorts are open on every local address. */
  readonly matchAll: boolean;
  /** CIDRs of this family ("primary" already resolved). */
  readonly cidrs: readonly string[];
  /** True when 127.0.0.1 may accept NodePorts (matchAll, or a CIDR containing it). */
  readonly containsIPv4Loopback: boolean;
  /** The addresses (of this family) inside the CIDRs; all of them when matchAll. */
  select(localAddresses: readonly string[]): string[];
}

const blockListType = (family: IPFamily) => (family === 'IPv6' ? 'ipv6' : 'ipv4');

const isLoopback = (ip: string) => (isIPv4(ip) ? ip.startsWith('127.') : ip === '::1');

export interface NodePortAddressOptions {
  /** What an unset (empty) nodePortAddresses means: every local address (default) or "primary". */
  readonly whenUnset?: 'all' | 'primary';
}

/**
 * @param specs config.nodePortAddresses
 * @param primaryNodeIP the node's primary address of this family, for "primary"
 */
export function resolveNodePortAddresses(
  specs: readonly string[],
  family: IPFamily,
  primaryNodeIP?: string,
  options: NodePortAddressOptions = {},
): NodePortAddresses {
  const cidrs: string[] = [];
  const effective = specs.length === 0 && options.whenUnset === 'primary' ? ['primary'] : specs;
  for (const spec of effective) {
    if (spec === 'primary') {
      // A loopback node IP pins nothing: the family stays open on every local address, as upstream.
      if (primaryNodeIP && ipFamilyOf(primaryNodeIP) === family && !isLoopback(primaryNodeIP)) {
        cidrs.push(family === 'IPv4' ? `${primaryNodeIP}/32` : `${primaryNodeIP}/128`);
      }
    } else if (cidrFamilyOf(spec) === family) {
      cidrs.push(spec);
    }
  }
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', prefix = ''] = cidr.split('/');
    list.addSubnet(address, Number(prefix), blockListType(family));
  }
  // As upstream: no CIDR of this family, or the zero CIDR, opens every local address.
  const matchAll = cidrs.length === 0 || cidrs.some((c) => c.endsWith('/0'));
  return {
    matchAll,
    cidrs,
    containsIPv4Loopback: family === 'IPv4' && (matchAll || list.check('127.0.0.1', 'ipv4')),
    select(localAddresses) {
      return localAddresses.filter((ip) => ipFamilyOf(ip) === family && (matchAll || list.check(ip, blockListType(family))));
    },
  };
}

interface IpAddrJson {
  addr_info?: { family?: string; local?: string }[];
}

/** The addresses assigned to local interfaces (`ip -j addr show`), of one family. */
export async function listLocalAddresses(runner: CommandRunner, family: IPFamily): Promise<string[]> {
  const result = await runner.run('ip', ['-j', family === 'IPv6' ? '-6' : '-4', 'addr', 'show'], { timeoutMs: 10_000 });
  if (result.code !== 0) throw new Error(`ip addr show failed: ${result.stderr.trim()}`);
  const links = JSON.parse(result.stdout || '[]') as IpAddrJson[];
  const addresses: string[] = [];
  for (const link of links) {
    for (const info of link.addr_info ?? []) if (info.local) addresses.push(info.local);
  }
  return addresses;
}

/**
 * The local addresses `selection` picks now, sorted (read at every sync, as upstream does). When
 * listing fails, `previous` (what was last written) stays rather than closing every NodePort;
 * without one the error is thrown, so the sync fails and is retried.
 */
export async function currentNodePortIPs(
  runner: CommandRunner,
  family: IPFamily,
  selection: NodePortAddresses,
  previous: readonly string[] | undefined,
  logger: Logger,
): Promise<string[]> {
  try {
    return selection.select(await listLocalAddresses(runner, family)).sort();
  } catch (err) {
    if (!previous) throw err;
    logger.error({ err: String(err) }, 'listing local addresses failed: NodePort addresses not updated');
    return [...previous];
  }
}
