import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExecRunner, OUTPUT_LIMIT_EXIT_CODE, runProcess, TIMEOUT_EXIT_CODE } from './exec-runner.js';

let dir: string;
let tools = 0;
/** Process groups the fake tools started, killed at the end whatever the outcome. */
const groups: number[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpts-exec-runner-'));
});

afterAll(async () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/**
 * Writes a shell script that records its process group (its own pid, since the runner makes
 * it a group leader) and then runs `body`. Returns the path and a reader for that group id.
 */
async function fakeTool(body: string): Promise<{ path: string; pgid: () => Promise<number> }> {
  const n = ++tools;
  const path = join(dir, `tool-${n}`);
  const pidFile = join(dir, `tool-${n}.pgid`);
  await writeFile(path, `#!/bin/sh\necho $$ > '${pidFile}'\n${body}\n`, { mode: 0o755 });
  return {
    path,
    pgid: async () => {
      const pgid = Number((await readFile(pidFile, 'utf8')).trim());
      groups.push(pgid);
      return pgid;
    },
  };
}

/** Running members of a process group; zombies waiting for a reaper count as gone. */
async function liveMembers(pgid: number): Promise<number[]> {
  const live: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') live.push(Number(entry));
  }
  return live;
}

async function membersAfter(pgid: number, withinMs: number): Promise<number[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    const live = await liveMembers(pgid);
    if (live.length === 0 || Date.now() > until) return live;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Deadline of the tests that read what the fake tool recorded: long enough for its shell to
 * start and record its group even on a loaded machine, before the deadline kills it.
 */
const DEADLINE_MS = 1_000;
/** How late after the deadline a call may resolve (timer and scheduling delay only). */
const LATE_MS = 800;

async function timed<T>(promise: Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await promise;
  return [value, performance.now() - start];
}

describe('createExecRunner', () => {
  it('passes argv and stdin without a shell and reports the exit code', async () => {
    const runner = createExecRunner();
    const result = await runner.run('sh', ['-c', 'cat; echo "$1" >&2; exit 3', 'sh', '$HOME'], { stdin: 'payload\n' });
    expect(result).toEqual({ code: 3, stdout: 'payload\n', stderr: '$HOME\n' });
  });

  it('rejects when the command does not exist', async () => {
    await expect(createExecRunner().run('no-such-command-kpts', [])).rejects.toThrow(/ENOENT/);
  });

  it('reports a process killed by a signal as 128 + the signal number', async () => {
    expect((await createExecRunner().run('sh', ['-c', 'kill -HUP $$'])).code).toBe(128 + 1);
  });

  it('kills a command that sleeps past its timeout, at the deadline, and says which command and how long', async () => {
    const tool = await fakeTool('exec sleep 30');
    const [result, elapsed] = await timed(createExecRunner().run(tool.path, ['--table', 'nat'], { timeoutMs: DEADLINE_MS }));
    expect(result.code).toBe(TIMEOUT_EXIT_CODE);
    expect(result.stderr).toContain(`${tool.path} --table nat: timed out after ${DEADLINE_MS} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 5);
    expect(elapsed).toBeLessThan(DEADLINE_MS + LATE_MS);
    expect(await membersAfter(await tool.pgid(), 1_000)).toEqual([]);
  });

  it('kills the whole process group and resolves at the deadline while a grandchild holds stdout', async () => {
    const tool = await fakeTool('sleep 30 &\necho started\nwait');
    const [result, elapsed] = await timed(createExecRunner().run(tool.path, [], { timeoutMs: DEADLINE_MS }));
    expect(result.code).toBe(TIMEOUT_EXIT_CODE);
    expect(result.stdout).toBe('started\n');
    expect(elapsed).toBeLessThan(DEADLINE_MS + LATE_MS);
    expect(await membersAfter(await tool.pgid(), 1_000)).toEqual([]);
  });

  it('returns once the command exits even if a process it left behind keeps stdout open', async () => {
    const tool = await fakeTool('sleep 30 &\necho done');
    const [result, elapsed] = await timed(createExecRunner().run(tool.path, [], { timeoutMs: 8_000 }));
    expect(result).toEqual({ code: 0, stdout: 'done\n', stderr: '' });
    expect(elapsed).toBeLessThan(2_000);
    await tool.pgid(); // the sleep it left is killed with the group at the end
  });

  it('resolves at the deadline when the group ignores SIGTERM, and SIGKILLs it after the grace period', async () => {
    const tool = await fakeTool("trap '' TERM\nsleep 30 &\nwait");
    const [result, elapsed] = await timed(runProcess(tool.path, [], { timeoutMs: DEADLINE_MS }, { killGraceMs: 1_000 }));
    expect(result.code).toBe(TIMEOUT_EXIT_CODE);
    expect(elapsed).toBeLessThan(DEADLINE_MS + LATE_MS);
    const pgid = await tool.pgid();
    // Still there right after the deadline: SIGTERM did nothing and the caller did not wait for it.
    expect((await liveMembers(pgid)).length).toBeGreaterThan(0);
    expect(await membersAfter(pgid, 3_000)).toEqual([]);
  });

  it('fails a command that floods stdout past the limit and kills it', async () => {
    const limit = 1024 * 1024;
    const tool = await fakeTool('exec yes kube-proxy');
    const [result, elapsed] = await timed(runProcess(tool.path, [], { timeoutMs: 8_000 }, { maxStdoutBytes: limit }));
    expect(result.code).toBe(OUTPUT_LIMIT_EXIT_CODE);
    expect(result.stderr).toContain(`${tool.path}: stdout exceeded ${limit} bytes`);
    expect(Buffer.byteLength(result.stdout)).toBeLessThanOrEqual(limit);
    expect(elapsed).toBeLessThan(4_000);
    expect(await membersAfter(await tool.pgid(), 1_500)).toEqual([]);
  });

  it('keeps the head of a long stderr and marks what it dropped, without failing the call', async () => {
    const tool = await fakeTool("head -c 300000 /dev/zero | tr '\\0' x >&2\necho ok");
    const result = await runProcess(tool.path, [], { timeoutMs: 8_000 }, { maxStderrBytes: 1000 });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('ok\n');
    expect(result.stderr).toBe(`${'x'.repeat(1000)}\n[299000 more bytes of stderr not kept]\n`);
  });

  it('applies a default timeout to a call that gives none', async () => {
    const tool = await fakeTool('exec sleep 30');
    const [result, elapsed] = await timed(createExecRunner({ defaultTimeoutMs: DEADLINE_MS }).run(tool.path, []));
    expect(result.code).toBe(TIMEOUT_EXIT_CODE);
    expect(result.stderr).toContain(`timed out after ${DEADLINE_MS} ms`);
    expect(elapsed).toBeLessThan(DEADLINE_MS + LATE_MS);
    expect(await membersAfter(await tool.pgid(), 1_000)).toEqual([]);
  });

  it('refuses a timeout that is not a positive number instead of running without one', async () => {
    await expect(createExecRunner().run('true', [], { timeoutMs: Number.NaN })).rejects.toThrow(/true: timeoutMs must be a number from 1 to \d+, got NaN/);
    await expect(createExecRunner().run('true', [], { timeoutMs: 0 })).rejects.toThrow(RangeError);
    await expect(createExecRunner().run('true', [], { timeoutMs: 2 ** 32 })).rejects.toThrow(RangeError);
  });
});
