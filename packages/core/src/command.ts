// Backends never spawn processes themselves: they go through a CommandRunner, which the app
// backs with real processes and tests replace with a recording one.

export interface CommandOptions {
  /** Written to the process's standard input, then closed. */
  readonly stdin?: string | Uint8Array;
  /**
   * Kill the process, and every process it started, after this long. Unset means the runner's
   * default: no command runs without a deadline.
   */
  readonly timeoutMs?: number;
}

export interface CommandResult {
  /** Exit code; a process killed by a signal or timeout reports a non-zero code. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandRunner {
  /**
   * Runs `command` with `args` (argv, never through a shell). Resolves with the exit code;
   * rejects only when the command cannot be started at all (for example, it is not installed).
   */
  run(command: string, args: readonly string[], options?: CommandOptions): Promise<CommandResult>;
}
