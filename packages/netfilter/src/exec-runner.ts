import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { CommandOptions, CommandResult, CommandRunner } from '@kube-proxy-ts/core';

/** Exit code reported when the deadline killed the command (as coreutils' timeout). */
export const TIMEOUT_EXIT_CODE = 124;
/** Exit code reported when the command printed more than its stdout limit and was killed. */
export const OUTPUT_LIMIT_EXIT_CODE = 125;
/** The timeout of a call that names none: no command may hold the sync loop forever. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/**
 * stdout kept per call. `iptables-nft-save -t nat` of 10 000 services with 10 endpoints each
 * printed 33.5 MB (35.4 MB with -c; bench/iptables.ts 10000 nft --keep, 2 shared cores): room
 * for four times that, and still a bound on memory.
 */
export const DEFAULT_MAX_STDOUT_BYTES = 128 * 1024 * 1024;
/** stderr kept per call; the rest is dropped and counted. Tools report errors first. */
export const DEFAULT_MAX_STDERR_BYTES = 64 * 1024;
/** Between SIGTERM and SIGKILL to a killed command's process group. */
export const DEFAULT_KILL_GRACE_MS = 1_000;
/** How long to keep reading after the command exited while something else still holds its pipes. */
const DRAIN_MS = 100;
/** setTimeout fires at once for larger delays. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ProcessLimits {
  /** Timeout of a call that gives no `timeoutMs`. Default DEFAULT_COMMAND_TIMEOUT_MS. */
  readonly defaultTimeoutMs?: number;
  /** stdout beyond this fails the call (OUTPUT_LIMIT_EXIT_CODE). Default DEFAULT_MAX_STDOUT_BYTES. */
  readonly maxStdoutBytes?: number;
  /** stderr beyond this is dropped and marked. Default DEFAULT_MAX_STDERR_BYTES. */
  readonly maxStderrBytes?: number;
  /** Between SIGTERM and SIGKILL. Default DEFAULT_KILL_GRACE_MS. */
  readonly killGraceMs?: number;
}

export interface ExecRunnerOptions extends ProcessLimits {
  /** Run every command inside this named network namespace (`ip netns exec NAME ...`). */
  readonly netns?: string;
}

/** A CommandRunner backed by real processes: argv only, never a shell. */
export function createExecRunner(options: ExecRunnerOptions = {}): CommandRunner {
  const { netns, ...limits } = options;
  return {
    run(command, args, runOptions) {
      return netns
        ? runProcess('ip', ['netns', 'exec', netns, command, ...args], runOptions, limits)
        : runProcess(command, args, runOptions, limits);
    },
  };
}

/**
 * Runs one process in a process group of its own and collects its output. Resolves with the
 * exit code (128+n when killed by signal n), or, right at the deadline, with TIMEOUT_EXIT_CODE
 * once the whole group was sent SIGTERM (SIGKILL follows after the grace period), or with
 * OUTPUT_LIMIT_EXIT_CODE when stdout outgrew its limit. Rejects only when the process cannot
 * start or the limits are not valid numbers.
 */
export function runProcess(
  command: string,
  args: readonly string[],
  options: CommandOptions = {},
  limits: ProcessLimits = {},
): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? limits.defaultTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const maxStdout = limits.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;
  const maxStderr = limits.maxStderrBytes ?? DEFAULT_MAX_STDERR_BYTES;
  const graceMs = limits.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const invalid =
    invalidLimit('timeoutMs', timeoutMs, 1, MAX_TIMER_MS) ??
    invalidLimit('maxStdoutBytes', maxStdout, 0, Number.MAX_SAFE_INTEGER) ??
    invalidLimit('maxStderrBytes', maxStderr, 0, Number.MAX_SAFE_INTEGER) ??
    invalidLimit('killGraceMs', graceMs, 0, MAX_TIMER_MS);
  if (invalid) return Promise.reject(new RangeError(`${describeCommand(command, args)}: ${invalid}`));

  return new Promise((resolve, reject) => {
    // detached: the child leads a new process group, so a timeout reaches its children too.
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const stdout = new OutputBuffer(maxStdout);
    const stderr = new OutputBuffer(maxStderr);
    let settled = false;
    let exitCode: number | undefined;
    let drainTimer: NodeJS.Timeout | undefined;

    const finish = (outcome: CommandResult | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(drainTimer);
      // Whatever still holds the pipes (a grandchild) must not keep this promise or its buffers.
      child.stdin.destroy();
      child.stdout.destroy();
      child.stderr.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const kill = (code: number, reason: string) => {
      killProcessGroup(child, graceMs);
      finish({ code, stdout: stdout.text(), stderr: appendLine(stderrText(), `${describeCommand(command, args)}: ${reason}`) });
    };
    const finishExited = () => {
      if (exitCode !== undefined) finish({ code: exitCode, stdout: stdout.text(), stderr: stderrText() });
    };
    const stderrText = () => (stderr.dropped > 0 ? appendLine(stderr.text(), `[${stderr.dropped} more bytes of stderr not kept]`) : stderr.text());
    // After 'exit' the output still in the pipes arrives before 'close'. A process that inherited
    // the pipes keeps 'close' away; finish once reading stops making progress.
    const drainThenFinish = () => {
      let seen = stdout.received + stderr.received;
      const check = () =>
        // setImmediate runs after the next poll phase, so data already in the pipes is read first.
        setImmediate(() => {
          const now = stdout.received + stderr.received;
          if (now === seen) return finishExited();
          seen = now;
          drainTimer = setTimeout(check, DRAIN_MS);
        });
      drainTimer = setTimeout(check, DRAIN_MS);
    };

    const deadline = setTimeout(() => kill(TIMEOUT_EXIT_CODE, `timed out after ${timeoutMs} ms; its process group was killed`), timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => {
      if (!stdout.append(chunk)) kill(OUTPUT_LIMIT_EXIT_CODE, `stdout exceeded ${maxStdout} bytes; its process group was killed`);
    });
    child.stderr.on('data', (chunk: Buffer) => stderr.append(chunk));
    child.on('error', (err) => {
      if (child.pid !== undefined) killProcessGroup(child, graceMs);
      finish(err);
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
      drainThenFinish();
    });
    child.on('close', finishExited);
    // A process that exits without reading stdin closes the pipe: that is not our error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** SIGTERM to the child's process group now, SIGKILL after the grace period. */
function killProcessGroup(child: ChildProcess, graceMs: number): void {
  const pgid = child.pid;
  if (pgid === undefined || !signalGroup(pgid, 'SIGTERM')) return;
  setTimeout(() => signalGroup(pgid, 'SIGKILL'), graceMs).unref();
}

/** False when the group no longer exists. */
function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Keeps the first `limit` bytes of a stream and counts the rest. */
class OutputBuffer {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  /** Every byte that arrived, kept or not. */
  received = 0;

  constructor(private readonly limit: number) {}

  /** False once more than `limit` bytes arrived. */
  append(chunk: Buffer): boolean {
    this.received += chunk.length;
    const room = this.limit - this.kept;
    if (room > 0) {
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.chunks.push(part);
      this.kept += part.length;
    }
    return this.received <= this.limit;
  }

  get dropped(): number {
    return this.received - this.kept;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

function appendLine(text: string, line: string): string {
  return text === '' || text.endsWith('\n') ? `${text}${line}\n` : `${text}\n${line}\n`;
}

function invalidLimit(name: string, value: number, min: number, max: number): string | undefined {
  return Number.isFinite(value) && value >= min && value <= max ? undefined : `${name} must be a number from ${min} to ${max}, got ${value}`;
}

/** The command line for messages, shortened: payloads travel on stdin, but argv can be long too. */
function describeCommand(command: string, args: readonly string[]): string {
  const line = [command, ...args].join(' ');
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}
