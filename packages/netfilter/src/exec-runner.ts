import { spawn } from 'node:child_process';
import type { CommandOptions, CommandResult, CommandRunner } from '@kube-proxy-ts/core';

export interface ExecRunnerOptions {
  /** Run every command inside this named network namespace (`ip netns exec NAME ...`). */
  readonly netns?: string;
}

/** A CommandRunner backed by real processes: argv only, never a shell. */
export function createExecRunner(options: ExecRunnerOptions = {}): CommandRunner {
  return {
    run(command, args, runOptions) {
      return options.netns
        ? runProcess('ip', ['netns', 'exec', options.netns, command, ...args], runOptions)
        : runProcess(command, args, runOptions);
    },
  };
}

/**
 * Runs one process and collects its output. Resolves with the exit code (124 on timeout,
 * 128+n when killed by signal n); rejects only when the process cannot start.
 */
export function runProcess(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: timedOut ? 124 : (code ?? 128 + (signal ? SIGNAL_NUMBERS[signal] ?? 0 : 0)),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8') + (timedOut ? `\n${command}: timed out after ${options.timeoutMs} ms` : ''),
      });
    });
    // A process that exits without reading stdin closes the pipe: that is not our error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
