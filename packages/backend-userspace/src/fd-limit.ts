// Every proxied TCP connection costs two descriptors (client and endpoint side) and every UDP
// session one, so the default limit of 1024 would cap the proxy at a few hundred connections.
// Node already lifts the soft limit to the hard one at start-up; the hard limit can only be
// raised with CAP_SYS_RESOURCE (root in the host's user namespace). Without it, the DaemonSet
// (or the container runtime's default ulimits) must grant a high RLIMIT_NOFILE.

import { readFileSync } from 'node:fs';
import type { CommandRunner, Logger } from '@kube-proxy-ts/core';

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
