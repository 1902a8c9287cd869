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
      const argv = options.netns ? ['ip', ['netns', 'exec', options.netns, command, ...args]] as const : [command, args] as const;
      return spawnCollect(argv[0], argv[1], runOptions);
    },
  };
}

function spawnCollect(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    }
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
    // A process that exits without reading stdin closes the pipe: that is not our error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}
