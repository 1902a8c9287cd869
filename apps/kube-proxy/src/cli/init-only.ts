// --init-only: the privileged part of upstream's start-up, then exit (for an init container, so
// that the proxy container itself needs fewer privileges). Upstream applies the conntrack settings,
// then builds the proxier of the mode only as far as its node settings: route_localnet for
// iptables' localhost NodePorts, the IPVS sysctls and timeouts; nftables sets nothing. No rules are
// written and no API server is contacted.

import type { Backend, CommandRunner, Logger, ProxyConfig } from '@kube-proxy-ts/core';
import { ipvsTimeoutArgs, resolveNodePortAddresses } from '@kube-proxy-ts/netfilter';
import { applyConntrackSettings, setSysctl } from '../daemon/conntrack.js';
import { missingRequirements } from '../daemon/requirements.js';

/** The node sysctls (name -> value) the configured mode sets before it programs anything. */
export function modeSysctls(config: ProxyConfig): Map<string, number> {
  const wanted = new Map<string, number>();
  switch (config.mode) {
    case 'iptables':
      // Upstream turns localhost NodePorts off unless nodePortAddresses admits 127.0.0.1.
      if (config.iptables.localhostNodePorts && resolveNodePortAddresses(config.nodePortAddresses, 'IPv4').containsIPv4Loopback) {
        wanted.set('net.ipv4.conf.all.route_localnet', 1);
      }
      break;
    case 'ipvs':
      wanted.set('net.ipv4.vs.conntrack', 1);
      wanted.set('net.ipv4.vs.expire_nodest_conn', 1);
      wanted.set('net.ipv4.vs.expire_quiescent_template', 1);
      wanted.set('net.ipv4.ip_forward', 1);
      if (config.ipvs.strictARP) {
        wanted.set('net.ipv4.conf.all.arp_ignore', 1);
        wanted.set('net.ipv4.conf.all.arp_announce', 2);
      }
      break;
  }
  return wanted;
}

export interface InitOnlyEnvironment {
  readonly runner: CommandRunner;
  readonly logger: Logger;
  /** The mode's backend (not started): what it needs from the machine is checked first. */
  readonly backend: Pick<Backend, 'name' | 'requirements'>;
  readonly cpus: number;
  readonly inHostNetworkNamespace: boolean;
  /** For tests: whether a path exists (the IPVS check reads /proc/net/ip_vs). */
  readonly exists?: (path: string) => boolean;
}

/** Applies what --init-only applies; resolves with the problems that make it fail (empty: success). */
export async function runInitOnly(config: ProxyConfig, env: InitOnlyEnvironment): Promise<string[]> {
  const missing = await missingRequirements(env.backend, { runner: env.runner, ...(env.exists ? { exists: env.exists } : {}) });
  if (missing.length > 0) return missing.map((p) => `proxy mode ${config.mode} cannot run on this machine: ${p}`);

  await applyConntrackSettings(config.conntrack, env);
  const problems: string[] = [];
  for (const [name, value] of modeSysctls(config)) {
    if (!(await setSysctl(name, value, env))) problems.push(`cannot set ${name}=${value}`);
  }
  if (config.mode === 'ipvs') {
    const { tcpTimeout, tcpFinTimeout, udpTimeout } = config.ipvs;
    const args = ipvsTimeoutArgs(Math.round(tcpTimeout / 1000), Math.round(tcpFinTimeout / 1000), Math.round(udpTimeout / 1000));
    if (args) {
      // Upstream logs a failure here and goes on.
      const r = await env.runner.run('ipvsadm', args, { timeoutMs: 10_000 }).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
      if (r.code !== 0) env.logger.error({ err: r.stderr.trim() }, 'Failed to configure IPVS timeouts');
    }
  }
  if (problems.length === 0) env.logger.info({ mode: config.mode }, 'System initialized and --init-only specified');
  return problems;
}
