// Line-oriented payloads (ipset restore, ipvsadm --restore, ip -batch) cut into bounded
// batches, so that no single process, and no kernel transaction behind it, grows with the cluster.

import type { CommandRunner } from '@kube-proxy-ts/core';

/**
 * Splits a line-oriented payload into chunks of at most `maxLines` lines, so that no single
 * process (and no single kernel transaction behind it) grows with the cluster.
 */
export function splitPayload(payload: string, maxLines: number): string[] {
  if (payload === '') return [];
  const lines = payload.endsWith('\n') ? payload.slice(0, -1).split('\n') : payload.split('\n');
  const chunks: string[] = [];
  for (let i = 0; i < lines.length; i += Math.max(1, maxLines)) chunks.push(`${lines.slice(i, i + Math.max(1, maxLines)).join('\n')}\n`);
  return chunks;
}

export interface BatchOptions {
  /** Lines per process. Default 20000. */
  readonly maxLines?: number;
  /** Kill a process after this long. Default 60 s. */
  readonly timeoutMs?: number;
}

/**
 * Runs an `ip -batch` payload in bounded batches with `-force`, which goes on past a failing line
 * (an address someone removed meanwhile). Resolves with the stderr of the batches that failed.
 */
export async function runIpBatch(runner: CommandRunner, payload: string, options: BatchOptions = {}): Promise<string[]> {
  const failures: string[] = [];
  for (const chunk of splitPayload(payload, options.maxLines ?? 5_000)) {
    const r = await runner.run('ip', ['-force', '-batch', '-'], { stdin: chunk, timeoutMs: options.timeoutMs ?? 60_000 });
    if (r.code !== 0) failures.push(r.stderr.trim() || `ip -batch exited ${r.code}`);
  }
  return failures;
}
