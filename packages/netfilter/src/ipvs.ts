// IPVS through ipvsadm: reading the kernel's virtual services (`ipvsadm -Ln`, which also shows
// connection counts) and writing changes as one `ipvsadm --restore` batch on stdin.

import type { CommandRunner } from '@kube-proxy-ts/core';
import { splitPayload, type BatchOptions } from './batches.js';

export type IpvsProtocol = 'TCP' | 'UDP' | 'SCTP';

/** Forwarding methods as `ipvsadm -Ln` prints them. */
export type IpvsForward = 'Masq' | 'Route' | 'Tunnel' | 'Local';

export interface IpvsVirtualServer {
  readonly protocol: IpvsProtocol;
  readonly address: string;
  readonly port: number;
  readonly scheduler: string;
  /** Scheduler flags (`-b`), e.g. ["mh-port"], sorted. */
  readonly schedulerFlags: readonly string[];
  /** Persistence timeout in seconds (ClientIP affinity); undefined when not persistent. */
  readonly persistentTimeout: number | undefined;
}

export interface IpvsRealServer {
  readonly address: string;
  readonly port: number;
  readonly forward: IpvsForward;
  readonly weight: number;
  readonly activeConnections: number;
  readonly inactiveConnections: number;
}

export interface IpvsServiceListing {
  readonly service: IpvsVirtualServer;
  readonly realServers: readonly IpvsRealServer[];
}

/** `ip:port`, with brackets for IPv6, as ipvsadm prints and reads addresses. */
export function ipvsHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Identity of a virtual service: `TCP/10.0.0.1:80`. */
export function virtualServerKey(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>): string {
  return `${vs.protocol}/${ipvsHostPort(vs.address, vs.port)}`;
}

/** The virtual services agree on everything `ipvsadm -E` can change. */
export function sameServiceSettings(a: IpvsVirtualServer, b: IpvsVirtualServer): boolean {
  return (
    a.scheduler === b.scheduler &&
    a.persistentTimeout === b.persistentTimeout &&
    a.schedulerFlags.length === b.schedulerFlags.length &&
    a.schedulerFlags.every((f, i) => f === b.schedulerFlags[i])
  );
}

function splitHostPort(text: string): { address: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) return undefined;
  return { address: m[1]!, port: Number(m[2]) };
}

const PROTOCOLS = new Set<string>(['TCP', 'UDP', 'SCTP']);

/**
 * Parses `ipvsadm -Ln` output. Firewall-mark services (FWM) are not ours and are skipped along
 * with their real servers; lines that cannot be understood are skipped too.
 */
export function parseIpvsadmList(text: string): IpvsServiceListing[] {
  const out: { service: IpvsVirtualServer; realServers: IpvsRealServer[] }[] = [];
  let current: { service: IpvsVirtualServer; realServers: IpvsRealServer[] } | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    if (line.startsWith('  -> ')) {
      const f = line.slice(5).trim().split(/\s+/);
      if (!current || f[0] === 'RemoteAddress:Port' || f.length < 5) continue;
      const hp = splitHostPort(f[0]!);
      if (!hp) continue;
      current.realServers.push({
        address: hp.address,
        port: hp.port,
        forward: f[1] as IpvsForward,
        weight: Number(f[2]),
        activeConnections: Number(f[3]),
        inactiveConnections: Number(f[4]),
      });
      continue;
    }
    const f = line.split(/\s+/);
    if (!PROTOCOLS.has(f[0]!)) {
      current = undefined;
      continue;
    }
    const hp = splitHostPort(f[1] ?? '');
    if (!hp || !f[2]) {
      current = undefined;
      continue;
    }
    let persistentTimeout: number | undefined;
    let schedulerFlags: string[] = [];
    for (let i = 3; i < f.length; i++) {
      const word = f[i]!;
      if (word === 'persistent') persistentTimeout = Number(f[++i]);
      else if (word.startsWith('(') && word.endsWith(')')) schedulerFlags = word.slice(1, -1).split(',').filter(Boolean).sort();
    }
    current = {
      service: { protocol: f[0] as IpvsProtocol, address: hp.address, port: hp.port, scheduler: f[2], schedulerFlags, persistentTimeout },
      realServers: [],
    };
    out.push(current);
  }
  return out;
}

function serviceSelector(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>): string[] {
  const flag = vs.protocol === 'TCP' ? '-t' : vs.protocol === 'UDP' ? '-u' : '--sctp-service';
  return [flag, ipvsHostPort(vs.address, vs.port)];
}

function serviceSettings(vs: IpvsVirtualServer): string[] {
  const args = ['-s', vs.scheduler];
  if (vs.schedulerFlags.length > 0) args.push('-b', vs.schedulerFlags.join(','));
  if (vs.persistentTimeout !== undefined) args.push('-p', String(vs.persistentTimeout));
  return args;
}

const FORWARD_FLAG: Record<IpvsForward, string> = { Masq: '-m', Route: '-g', Tunnel: '-i', Local: '-g' };

/** One `ipvsadm --restore` payload: each call appends a command line. */
export class IpvsadmRestoreWriter {
  private readonly lines: string[] = [];

  addService(vs: IpvsVirtualServer): this {
    this.lines.push(['-A', ...serviceSelector(vs), ...serviceSettings(vs)].join(' '));
    return this;
  }

  editService(vs: IpvsVirtualServer): this {
    this.lines.push(['-E', ...serviceSelector(vs), ...serviceSettings(vs)].join(' '));
    return this;
  }

  deleteService(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>): this {
    this.lines.push(['-D', ...serviceSelector(vs)].join(' '));
    return this;
  }

  addRealServer(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>, rs: Pick<IpvsRealServer, 'address' | 'port' | 'forward' | 'weight'>): this {
    this.lines.push(['-a', ...serviceSelector(vs), '-r', ipvsHostPort(rs.address, rs.port), FORWARD_FLAG[rs.forward], '-w', String(rs.weight)].join(' '));
    return this;
  }

  editRealServer(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>, rs: Pick<IpvsRealServer, 'address' | 'port' | 'forward' | 'weight'>): this {
    this.lines.push(['-e', ...serviceSelector(vs), '-r', ipvsHostPort(rs.address, rs.port), FORWARD_FLAG[rs.forward], '-w', String(rs.weight)].join(' '));
    return this;
  }

  deleteRealServer(vs: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>, rs: Pick<IpvsRealServer, 'address' | 'port'>): this {
    this.lines.push(['-d', ...serviceSelector(vs), '-r', ipvsHostPort(rs.address, rs.port)].join(' '));
    return this;
  }

  get size(): number {
    return this.lines.length;
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

/** Reads every virtual service with its real servers and connection counts. */
export async function listIpvs(runner: CommandRunner, timeoutMs = 60_000): Promise<IpvsServiceListing[]> {
  const result = await runner.run('ipvsadm', ['-Ln'], { timeoutMs });
  if (result.code !== 0) throw new Error(`ipvsadm -Ln failed (${result.code}): ${result.stderr.trim()}`);
  return parseIpvsadmList(result.stdout);
}

export interface IpvsadmRestoreResult {
  readonly ok: boolean;
  /** ipvsadm --restore goes on after a failed line and still exits 0: its complaints are here. */
  readonly errors: readonly string[];
  /** Processes run. */
  readonly batches: number;
}

/**
 * Applies a payload with `ipvsadm --restore` in bounded batches (each line is its own netlink
 * request, so batches only bound the process); empty payloads run nothing.
 */
export async function runIpvsadmRestore(runner: CommandRunner, payload: string, options: BatchOptions = {}): Promise<IpvsadmRestoreResult> {
  const errors: string[] = [];
  let batches = 0;
  let ok = true;
  for (const chunk of splitPayload(payload, options.maxLines ?? 20_000)) {
    batches++;
    const result = await runner.run('ipvsadm', ['--restore'], { stdin: chunk, timeoutMs: options.timeoutMs ?? 60_000 });
    const lines = result.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
    errors.push(...lines);
    if (result.code !== 0) {
      ok = false;
      if (lines.length === 0) errors.push(`ipvsadm --restore exited ${result.code}`);
    }
  }
  return { ok: ok && errors.length === 0, errors, batches };
}

/** `ipvsadm --set tcp tcpfin udp` (seconds; 0 keeps the kernel's value), or undefined when all are 0. */
export function ipvsTimeoutArgs(tcpSeconds: number, tcpFinSeconds: number, udpSeconds: number): string[] | undefined {
  if (tcpSeconds <= 0 && tcpFinSeconds <= 0 && udpSeconds <= 0) return undefined;
  return ['--set', String(Math.max(0, tcpSeconds)), String(Math.max(0, tcpFinSeconds)), String(Math.max(0, udpSeconds))];
}
