// Every proxied TCP connection costs two descriptors (client and endpoint side) and every UDP
// session one, so the default limit of 1024 would cap the proxy at a few hundred connections.
// Node already lifts the soft limit to the hard one at start-up; the hard limit can only be
// raised with CAP_SYS_RESOURCE (root in the host's user namespace). Without it, the DaemonSet
// (or the container runtime's default ulimits) must grant a high RLIMIT_NOFILE.

import { readFileSync } from 'node:fs';
import type { CommandRunner, Logger } from '@kube-proxy-ts/core';
import { AFFINITY_CLIENTS, AFFINITY_CLIENTS_PER_SERVICE_PORT } from './layout.js';

/** What the proxy asks for, as upstream's userspace mode did (64k) with room to spare. */
export const WANTED_FILE_LIMIT = 1_048_576;

export interface FileLimit {
  readonly soft: number;
  readonly hard: number;
}

/** Parses the "Max open files" line of /proc/<pid>/limits; "unlimited" reads as Infinity. */
export function parseFileLimit(limits: string): FileLimit | undefined {
  const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
  if (!line) return undefined;
  const [soft, hard] = line
    .slice('Max open files'.length)
    .trim()
    .split(/\s+/)
    .map((v) => (v === 'unlimited' ? Infinity : Number(v)));
  if (soft === undefined || hard === undefined || Number.isNaN(soft) || Number.isNaN(hard)) return undefined;
  return { soft, hard };
}

export function readFileLimit(): FileLimit | undefined {
  try {
    return parseFileLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined; // not Linux, or /proc not mounted
  }
}

/**
 * Raises this process's RLIMIT_NOFILE towards `wanted` with prlimit(1), where allowed. Never
 * throws: a limit that stays low is logged with what the DaemonSet should set instead.
 */
export async function raiseFileLimit(
  runner: CommandRunner,
  logger: Logger,
  read: () => FileLimit | undefined = readFileLimit,
  wanted = WANTED_FILE_LIMIT,
): Promise<FileLimit | undefined> {
  const before = read();
  if (!before || before.soft >= wanted) return before;
  try {
    const r = await runner.run('prlimit', ['--pid', String(process.pid), `--nofile=${wanted}:${wanted}`], { timeoutMs: 5_000 });
    if (r.code !== 0) logger.debug({ stderr: r.stderr.trim() }, 'prlimit could not raise the open-file limit');
  } catch (err) {
    logger.debug({ err: String(err) }, 'prlimit is not available');
  }
  const after = read() ?? before;
  if (after.soft < wanted) {
    logger.warn(
      { soft: after.soft, hard: after.hard, wanted },
      'open-file limit is low for a userspace proxy (two descriptors per connection): raise RLIMIT_NOFILE for the container',
    );
  } else {
    logger.info({ soft: after.soft, hard: after.hard }, 'raised the open-file limit');
  }
  return after;
}

/** How many connections, sessions and ClientIP pins the proxy holds at most. */
export interface ConnectionLimits {
  /** Proxied TCP connections (accepted, whether still dialing or relaying), all service ports. */
  readonly tcpConnections: number;
  readonly tcpConnectionsPerServicePort: number;
  /** UDP client sessions, all service ports. */
  readonly udpSessions: number;
  readonly udpSessionsPerServicePort: number;
  /** ClientIP affinity pins (sessionAffinity: ClientIP), all service ports; the oldest go first. */
  readonly affinityClients: number;
  readonly affinityClientsPerServicePort: number;
}

/** Assumed when /proc cannot tell: the usual default soft limit. */
const UNKNOWN_FILE_LIMIT = 1024;
/** Descriptors left for everything but proxied traffic: listeners, the API watch, metrics, logs. */
const MAX_RESERVED_DESCRIPTORS = 1024;
/**
 * Memory bounds the totals too. A pair of connected sockets costs about 9 KiB of RSS on Node 20
 * (measured with 4000 idle pairs), and a relayed TCP connection also keeps its 64 KiB read
 * buffer once the endpoint has sent data; a UDP session is one socket. A million descriptors
 * would allow 260k connections (about 19 GiB); these keep a flood under about 1.2 GiB of
 * connections (150 MiB while idle) and 300 MiB of sessions.
 */
export const MAX_TCP_CONNECTIONS = 16_384;
export const MAX_UDP_SESSIONS = 65_536;

/**
 * The default bounds for an open-file limit: after a reserve (a quarter of the limit, at most
 * 1024), TCP connections (two descriptors each) and UDP sessions (one) get half of the rest
 * each, up to the memory bounds, so a flood of either leaves the proxy able to accept the other; one service port may
 * take half of a protocol's total, so a flood at one service leaves room for the others.
 */
export function connectionLimits(limit: FileLimit | undefined): ConnectionLimits {
  const soft = Math.min(limit?.soft ?? UNKNOWN_FILE_LIMIT, WANTED_FILE_LIMIT);
  const usable = soft - Math.min(MAX_RESERVED_DESCRIPTORS, Math.floor(soft / 4));
  const tcp = Math.max(1, Math.min(MAX_TCP_CONNECTIONS, Math.floor(usable / 4)));
  const udp = Math.max(1, Math.min(MAX_UDP_SESSIONS, Math.floor(usable / 2)));
  return {
    tcpConnections: tcp,
    tcpConnectionsPerServicePort: Math.max(1, Math.floor(tcp / 2)),
    udpSessions: udp,
    udpSessionsPerServicePort: Math.max(1, Math.floor(udp / 2)),
    affinityClients: AFFINITY_CLIENTS,
    affinityClientsPerServicePort: AFFINITY_CLIENTS_PER_SERVICE_PORT,
  };
}

/**
 * Overrides `base` with `overrides`, refusing anything but positive integers (a zero or NaN
 * bound would silently refuse every client).
 */
export function withLimits(base: ConnectionLimits, overrides: Partial<ConnectionLimits> = {}): ConnectionLimits {
  const merged = { ...base };
  for (const [name, value] of Object.entries(overrides) as [keyof ConnectionLimits, unknown][]) {
    if (!(name in base)) throw new Error(`unknown connection limit ${JSON.stringify(name)}`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new Error(`connection limit ${name} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    merged[name] = value;
  }
  return merged;
}
