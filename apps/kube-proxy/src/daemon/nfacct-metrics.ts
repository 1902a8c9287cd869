// Upstream's iptables-mode packet counters, read from nfacct objects at each scrape:
//   kubeproxy_iptables_ct_state_invalid_dropped_packets_total   <- ct_state_invalid_dropped_pkts
//   kubeproxy_iptables_localhost_nodeports_accepted_packets_total <- localhost_nps_accepted_pkts
// As upstream, only in iptables mode, and only where the node has nfacct accounting: elsewhere
// the series are absent, not zero, and a scrape that cannot read an object leaves its series out.

import { METRICS_SUBSYSTEM, type CommandRunner, type Logger } from '@kube-proxy-ts/core';
import { ensureNFAcctCounters, getNFAcctCounter, NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED } from '@kube-proxy-ts/netfilter';
import { Counter, type Registry } from 'prom-client';

export const NFACCT_METRICS = [
  { name: `${METRICS_SUBSYSTEM}_iptables_ct_state_invalid_dropped_packets_total`, object: NFACCT_CT_STATE_INVALID_DROPPED, help: 'packets dropped by iptables to work around conntrack problems' },
  { name: `${METRICS_SUBSYSTEM}_iptables_localhost_nodeports_accepted_packets_total`, object: NFACCT_LOCALHOST_NODEPORTS_ACCEPTED, help: 'Number of packets accepted on nodeports of loopback interface' },
] as const;

/** A counter whose one sample is an nfacct object's packet count, read when scraped. */
class NFAcctPacketsCounter extends Counter {
  constructor(
    config: { name: string; help: string; registry: Registry },
    private readonly object: string,
    private readonly runner: CommandRunner,
    private readonly logger: Pick<Logger, 'debug'>,
  ) {
    super({ name: config.name, help: config.help, registers: [config.registry] });
  }

  override async get(): ReturnType<Counter['get']> {
    const [metric, read] = await Promise.all([super.get(), getNFAcctCounter(this.runner, this.object)]);
    if (!read) this.logger.debug({ object: this.object }, 'cannot read nfacct counter');
    return { ...metric, values: read ? [{ value: read.packets, labels: {} }] : [] };
  }
}

/**
 * Creates the nfacct objects the iptables rules count into and registers their series; resolves
 * with the names registered (none where nfacct is not supported).
 */
export async function registerNFAcctMetrics(registry: Registry, runner: CommandRunner, logger: Pick<Logger, 'debug' | 'info' | 'warn'>): Promise<string[]> {
  const present = await ensureNFAcctCounters(
    runner,
    NFACCT_METRICS.map((m) => m.object),
    logger,
  );
  if (present.size === 0) {
    logger.info('nfacct accounting is not available; the iptables nfacct packet counters are not exported');
    return [];
  }
  const registered: string[] = [];
  for (const m of NFACCT_METRICS) {
    if (!present.has(m.object) || registry.getSingleMetric(m.name)) continue;
    new NFAcctPacketsCounter({ name: m.name, help: m.help, registry }, m.object, runner, logger);
    registered.push(m.name);
  }
  return registered;
}
