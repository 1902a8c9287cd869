// Flushing stale UDP conntrack entries. UDP has no connection teardown, so a client such as a DNS
// resolver keeps sending to a dead endpoint (or into a blackhole) as long as its conntrack entry
// lives. After a successful sync we delete the entries that point at endpoints that went away,
// at ClusterIPs that were deleted, and the pre-DNAT entries of services that just got endpoints.

import type { ChangeSet, CommandRunner, IPFamily, Logger, ProxyState } from '@kube-proxy-ts/core';

/** Selects conntrack entries; unset fields match anything. */
export interface ConntrackFlowFilter {
  readonly protocol: 'udp' | 'tcp' | 'sctp';
  /** Original destination address (the service IP the client used). */
  readonly origDst?: string;
  /** Original destination port (service port or node port). */
  readonly origDstPort?: number;
  /** Reply source address (the endpoint that answered after DNAT). */
  readonly replySrc?: string;
  readonly replySrcPort?: number;
}

/** argv of `conntrack -D` for one filter. */
export function conntrackDeleteArgs(family: IPFamily, filter: ConntrackFlowFilter): string[] {
  const args = ['-D', '-f', family === 'IPv6' ? 'ipv6' : 'ipv4', '-p', filter.protocol];
  if (filter.origDst !== undefined) args.push('--orig-dst', filter.origDst);
  if (filter.origDstPort !== undefined) args.push('--orig-port-dst', String(filter.origDstPort));
  if (filter.replySrc !== undefined) args.push('--reply-src', filter.replySrc);
  if (filter.replySrcPort !== undefined) args.push('--reply-port-src', String(filter.replySrcPort));
  return args;
}

/** The UDP flows a sync from the previous checkpoint to `state` made stale. */
export function planStaleUDPFlows(state: ProxyState, changes: ChangeSet): ConntrackFlowFilter[] {
  const filters: ConntrackFlowFilter[] = [];
  const seen = new Set<string>();
  const add = (filter: ConntrackFlowFilter) => {
    const key = JSON.stringify(filter);
    if (!seen.has(key)) {
      seen.add(key);
      filters.push(filter);
    }
  };
  for (const ip of changes.deletedUDPClusterIPs) add({ protocol: 'udp', origDst: ip });
  for (const { servicePort, endpoint } of changes.staleUDPEndpoints) {
    const svc = state.services.get(servicePort);
    if (!svc || svc.protocol !== 'UDP') continue; // deleted services are covered by their ClusterIP
    for (const ip of [svc.clusterIP, ...svc.externalIPs, ...svc.loadBalancerVIPs]) {
      add({ protocol: 'udp', origDst: ip, origDstPort: svc.port, replySrc: endpoint.ip, replySrcPort: endpoint.port });
    }
    if (svc.nodePort) add({ protocol: 'udp', origDstPort: svc.nodePort, replySrc: endpoint.ip, replySrcPort: endpoint.port });
  }
  for (const key of changes.newlyActiveUDPServices) {
    const svc = state.services.get(key);
    if (!svc || svc.protocol !== 'UDP') continue;
    // Entries made while the service had no endpoint were never DNATed: the client keeps
    // hitting the old verdict until they go.
    for (const ip of [svc.clusterIP, ...svc.externalIPs, ...svc.loadBalancerVIPs]) {
      add({ protocol: 'udp', origDst: ip, origDstPort: svc.port, replySrc: ip });
    }
    if (svc.nodePort) add({ protocol: 'udp', origDstPort: svc.nodePort });
  }
  return filters;
}

export interface ConntrackCleanupResult {
  /** Entries the kernel reported deleted. */
  readonly deleted: number;
  /** Filters whose `conntrack -D` failed for another reason than "no entry matched". */
  readonly failures: number;
}

const DELETED_COUNT = /(\d+) flow entries have been deleted/;

/** How many entries a `conntrack -D` run says it deleted; undefined when it does not say. */
export function conntrackDeletedCount(output: string): number | undefined {
  const count = DELETED_COUNT.exec(output);
  return count ? Number(count[1]) : undefined;
}

/**
 * Each `conntrack -D` walks the whole conntrack table and runs inside a sync: past this it is
 * killed and counted as a failure, so a stuck one cannot hold the sync loop.
 */
export const CONNTRACK_DELETE_TIMEOUT_MS = 30_000;

/** Runs `conntrack -D` once per filter. Never throws: a missing tool or a timeout is logged and counted. */
export async function deleteConntrackFlows(
  runner: CommandRunner,
  family: IPFamily,
  filters: readonly ConntrackFlowFilter[],
  logger?: Pick<Logger, 'warn' | 'debug'>,
  timeoutMs = CONNTRACK_DELETE_TIMEOUT_MS,
): Promise<ConntrackCleanupResult> {
  let deleted = 0;
  let failures = 0;
  for (const filter of filters) {
    const args = conntrackDeleteArgs(family, filter);
    try {
      const result = await runner.run('conntrack', args, { timeoutMs });
      const count = conntrackDeletedCount(result.stderr + result.stdout);
      if (count !== undefined) {
        deleted += count;
      } else if (result.code !== 0) {
        failures++;
        logger?.warn({ args, stderr: result.stderr.trim() }, 'conntrack delete failed');
      }
    } catch (err) {
      failures++;
      logger?.warn({ args, err: String(err) }, 'conntrack could not run');
    }
  }
  logger?.debug({ filters: filters.length, deleted, failures }, 'conntrack cleanup done');
  return { deleted, failures };
}

/**
 * What every kernel backend does after a sync applied: delete the UDP flows it made stale
 * (removed ClusterIPs, endpoints gone or no longer serving, services that just got endpoints),
 * so that clients do not keep sending to an address that no longer answers.
 */
export function clearStaleUDPFlows(
  ctx: { readonly runner: CommandRunner; readonly logger: Pick<Logger, 'warn' | 'debug'> },
  family: IPFamily,
  state: ProxyState,
  changes: ChangeSet,
): Promise<ConntrackCleanupResult> {
  return deleteConntrackFlows(ctx.runner, family, planStaleUDPFlows(state, changes), ctx.logger);
}
