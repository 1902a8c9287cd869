// Conntrack tuning as upstream kube-proxy applies it at start: the table size (global, so only
// from the host's network namespace) and the per-namespace TCP/UDP timeouts. Failures are
// logged and start-up goes on, so a read-only /proc does not keep the proxy down.

import type { CommandRunner, Logger, ProxyConfig } from '@kube-proxy-ts/core';

const HASHSIZE = '/sys/module/nf_conntrack/parameters/hashsize';

export interface ConntrackEnvironment {
  readonly runner: CommandRunner;
  readonly logger: Logger;
  readonly cpus: number;
  /** True when the process shares the init process's network namespace (nf_conntrack_max is global). */
  readonly inHostNetworkNamespace: boolean;
}

/** upstream's getConntrackMax: maxPerCore x cores, never below min; 0 leaves the kernel alone. */
export function conntrackMax(config: ProxyConfig['conntrack'], cpus: number): number {
  if (config.maxPerCore <= 0) return 0;
  return Math.max(config.maxPerCore * cpus, config.min);
}

/** The sysctls (name -> value) the configuration asks for, besides nf_conntrack_max. */
export function conntrackSysctls(config: ProxyConfig['conntrack']): Map<string, number> {
  const wanted = new Map<string, number>();
  const seconds = (ms: number) => Math.floor(ms / 1000);
  if (config.tcpEstablishedTimeout > 0) wanted.set('net.netfilter.nf_conntrack_tcp_timeout_established', seconds(config.tcpEstablishedTimeout));
  if (config.tcpCloseWaitTimeout > 0) wanted.set('net.netfilter.nf_conntrack_tcp_timeout_close_wait', seconds(config.tcpCloseWaitTimeout));
  if (config.tcpBeLiberal) wanted.set('net.netfilter.nf_conntrack_tcp_be_liberal', 1);
  if (config.udpTimeout > 0) wanted.set('net.netfilter.nf_conntrack_udp_timeout', seconds(config.udpTimeout));
  if (config.udpStreamTimeout > 0) wanted.set('net.netfilter.nf_conntrack_udp_timeout_stream', seconds(config.udpStreamTimeout));
  return wanted;
}

export async function applyConntrackSettings(config: ProxyConfig['conntrack'], env: ConntrackEnvironment): Promise<void> {
  const max = conntrackMax(config, env.cpus);
  if (max > 0) {
    if (env.inHostNetworkNamespace) {
      await raiseConntrackMax(max, env);
    } else {
      env.logger.info({ max }, 'Not in the host network namespace: leaving nf_conntrack_max and hashsize alone');
    }
  }
  for (const [name, value] of conntrackSysctls(config)) {
    await setSysctl(name, value, env);
  }
}

// Like upstream: the hash table grows to max/4 buckets first, and nothing is ever lowered.
async function raiseConntrackMax(max: number, env: ConntrackEnvironment): Promise<void> {
  const hashsize = await readNumber('cat', [HASHSIZE], env);
  if (hashsize !== undefined && hashsize < Math.floor(max / 4)) {
    const r = await env.runner.run('tee', [HASHSIZE], { stdin: String(Math.floor(max / 4)) });
    if (r.code !== 0) env.logger.warn({ hashsize: Math.floor(max / 4), stderr: r.stderr.trim() }, 'Failed to raise the conntrack hashsize');
  }
  const current = await readNumber('sysctl', ['-n', 'net.netfilter.nf_conntrack_max'], env);
  if (current !== undefined && current >= max) return;
  await setSysctl('net.netfilter.nf_conntrack_max', max, env);
}

/** Writes a sysctl unless it already has the value (upstream's EnsureSysctl); false when the kernel refused. */
export async function setSysctl(name: string, value: number, env: Pick<ConntrackEnvironment, 'runner' | 'logger'>): Promise<boolean> {
  const current = await readNumber('sysctl', ['-n', name], env);
  if (current === value) return true;
  const r = await run(env, 'sysctl', ['-w', `${name}=${value}`]);
  if (r?.code === 0) env.logger.info({ sysctl: name, value, previous: current }, 'Set sysctl');
  else env.logger.warn({ sysctl: name, value, stderr: r?.stderr.trim() }, 'Failed to set sysctl');
  return r?.code === 0;
}

async function readNumber(command: string, args: string[], env: Pick<ConntrackEnvironment, 'runner' | 'logger'>): Promise<number | undefined> {
  const r = await run(env, command, args);
  if (!r || r.code !== 0) return undefined;
  const n = Number.parseInt(r.stdout.trim(), 10);
  return Number.isFinite(n) ? n : undefined;
}

async function run(env: Pick<ConntrackEnvironment, 'runner' | 'logger'>, command: string, args: string[]) {
  try {
    return await env.runner.run(command, args, { timeoutMs: 5_000 });
  } catch (err) {
    env.logger.warn({ command, err: (err as Error).message }, 'Cannot run command for sysctl settings');
    return undefined;
  }
}
