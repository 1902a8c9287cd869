// A CommandRunner for unit tests: records every call and answers from scripted responses, so a
// backend's commands and payloads can be asserted without spawning anything.

import type { CommandOptions, CommandResult, CommandRunner } from '@kube-proxy-ts/core';

export interface RecordedCall {
  readonly command: string;
  readonly args: readonly string[];
  /** stdin decoded as UTF-8; undefined when none was given. */
  readonly stdin: string | undefined;
  readonly options: CommandOptions | undefined;
  /** What the runner answered; undefined when the responder threw (run rejected). */
  readonly result: CommandResult | undefined;
}

/** A scripted answer: a fixed (partial) result, or a function of the call. Throwing makes run() reject. */
export type Response =
  | Partial<CommandResult>
  | ((args: readonly string[], stdin: string | undefined) => Partial<CommandResult> | Promise<Partial<CommandResult>>);

export interface RecordingRunnerOptions {
  /** Answer for commands without a responder. Default: `{ code: 0, stdout: '', stderr: '' }`. */
  defaultResponse?: Response;
  /** Reject calls to commands without a responder, as if not installed. Default false. */
  strict?: boolean;
}

export interface RecordingRunner extends CommandRunner {
  /** Every call so far, oldest first. */
  readonly calls: readonly RecordedCall[];
  /** The calls to one command (e.g. 'iptables-restore'). */
  callsTo(command: string): RecordedCall[];
  /** The stdin of every call to `command`, in order (handy for restore payloads). */
  stdinsTo(command: string): string[];
  /**
   * Answer calls to `command` with `response` from now on (the latest registration wins).
   * With `when`, only calls whose args satisfy it; others fall through to earlier registrations.
   */
  on(command: string, response: Response, when?: (args: readonly string[]) => boolean): this;
  /** Answer only the next matching call to `command` with `response`, before any `on` responder. */
  once(command: string, response: Response, when?: (args: readonly string[]) => boolean): this;
  /** Forget recorded calls; responders stay. */
  reset(): void;
  /** Forget responders (calls stay). */
  clearResponses(): void;
}

interface Responder {
  command: string;
  response: Response;
  when: ((args: readonly string[]) => boolean) | undefined;
  once: boolean;
}

const decoder = new TextDecoder();

export function createRecordingRunner(options: RecordingRunnerOptions = {}): RecordingRunner {
  const calls: RecordedCall[] = [];
  let responders: Responder[] = [];

  function pick(command: string, args: readonly string[]): Responder | undefined {
    const matches = (r: Responder) => r.command === command && (!r.when || r.when(args));
    const oneShot = responders.find((r) => r.once && matches(r));
    if (oneShot) {
      responders = responders.filter((r) => r !== oneShot);
      return oneShot;
    }
    for (let i = responders.length - 1; i >= 0; i--) {
      const r = responders[i]!;
      if (!r.once && matches(r)) return r;
    }
    return undefined;
  }

  const runner: RecordingRunner = {
    get calls() {
      return calls;
    },
    async run(command, args, runOptions) {
      const argv = [...args];
      const stdin =
        runOptions?.stdin === undefined
          ? undefined
          : typeof runOptions.stdin === 'string'
            ? runOptions.stdin
            : decoder.decode(runOptions.stdin);
      const responder = pick(command, argv);
      const response = responder?.response ?? options.defaultResponse ?? {};
      let result: CommandResult | undefined;
      try {
        if (!responder && options.strict) {
          throw new Error(`recording runner: no response scripted for ${command} ${argv.join(' ')}`);
        }
        const partial = typeof response === 'function' ? await response(argv, stdin) : response;
        result = { code: partial.code ?? 0, stdout: partial.stdout ?? '', stderr: partial.stderr ?? '' };
        return result;
      } finally {
        calls.push({ command, args: argv, stdin, options: runOptions, result });
      }
    },
    callsTo(command) {
      return calls.filter((c) => c.command === command);
    },
    stdinsTo(command) {
      return runner.callsTo(command).map((c) => c.stdin ?? '');
    },
    on(command, response, when) {
      responders.push({ command, response, when, once: false });
      return runner;
    },
    once(command, response, when) {
      responders.push({ command, response, when, once: true });
      return runner;
    },
    reset() {
      calls.length = 0;
    },
    clearResponses() {
      responders = [];
    },
  };
  return runner;
}
