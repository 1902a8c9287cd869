// pino logging that prints what upstream kube-proxy prints: klog's text lines by default, or
// component-base's JSON lines with --logging-format=json (see format.ts for both shapes). pino
// serializes each record; a synchronous stream turns it into the chosen format, so no worker
// thread can lose lines when the process exits. klog's -v maps onto pino levels: V(0) info, V(2)
// debug (one line per sync), V(5) trace.

import { performance } from 'node:perf_hooks';
import pino, { type Logger as PinoLogger } from 'pino';
import type { LogLevel } from '../cli/options.js';
import { formatJson, formatText, type LogRecord, type Severity } from './format.js';

export type { PinoLogger };

/** klog verbosity -> pino level: 0-1 info, 2-4 debug, 5+ trace. */
export function levelForVerbosity(v: number): LogLevel {
  if (v >= 5) return 'trace';
  if (v >= 2) return 'debug';
  return 'info';
}

/** The klog verbosity an info-like pino level stands for (the `v` of a JSON record). */
function verbosityOfLevel(level: number): number {
  if (level <= 10) return 5;
  if (level <= 20) return 2;
  return 0;
}

function severityOfLevel(level: number): Severity {
  if (level >= 60) return 'F';
  if (level >= 50) return 'E';
  if (level >= 40) return 'W';
  return 'I';
}

export interface LoggerOptions {
  readonly format: 'json' | 'text';
  readonly level: LogLevel;
  /** Where lines go; default stderr (as klog). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions): PinoLogger {
  const sink = opts.destination ?? pino.destination({ fd: 2, sync: true });
  const stream = new KlogStream(opts.format, (line) => void sink.write(line), process.pid);
  return pino(
    {
      level: opts.level,
      base: undefined,
      messageKey: 'msg',
      errorKey: 'err',
      // Sub-millisecond time, so the text format's microseconds mean something.
      timestamp: () => `,"time":${performance.timeOrigin + performance.now()}`,
    },
    stream,
  );
}

const RESERVED = new Set(['level', 'time', 'msg', 'err']);

/** A pino destination that rewrites each serialized record as one klog text or JSON line. */
class KlogStream {
  constructor(
    private readonly format: 'json' | 'text',
    private readonly out: (line: string) => void,
    private readonly pid: number,
  ) {}

  write(serialized: string): void {
    // pino calls this synchronously from the logging call, so the caller is on the stack now.
    const caller = callerOf(stackNow());
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(serialized) as Record<string, unknown>;
    } catch {
      this.out(serialized.endsWith('\n') ? serialized : `${serialized}\n`);
      return;
    }
    const level = typeof parsed.level === 'number' ? parsed.level : 30;
    const record: LogRecord = {
      time: typeof parsed.time === 'number' ? parsed.time : Date.now(),
      severity: severityOfLevel(level),
      verbosity: verbosityOfLevel(level),
      caller,
      msg: typeof parsed.msg === 'string' ? parsed.msg : '',
      err: errorText(parsed.err),
      fields: Object.entries(parsed).filter(([k]) => !RESERVED.has(k)),
    };
    this.out(this.format === 'json' ? formatJson(record) : formatText(record, this.pid));
  }
}

// pino's err serializer gives {type, message, stack}; upstream prints the message only.
function errorText(err: unknown): string | undefined {
  if (err === undefined || err === null) return undefined;
  if (typeof err === 'string') return err;
  if (typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') return (err as { message: string }).message;
  return JSON.stringify(err);
}

function stackNow(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 16;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  return stack;
}

const FRAME = /\(?((?:file:\/\/)?[^()\s]+?):(\d+):\d+\)?$/;
const PINO_FRAME = /[\\/]pino[\\/]/;

/**
 * `dir/file:line` of the first frame after pino's own (the code that called logger.info). With
 * source maps enabled (the CLI enables them) the frame names the TypeScript source.
 */
export function callerOf(stack: string): string {
  const frames = stack
    .split('\n')
    .slice(1)
    .map((l) => FRAME.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null);
  let last = -1;
  frames.forEach((m, i) => {
    if (PINO_FRAME.test(m[1] as string)) last = i;
  });
  const frame = last >= 0 ? frames[last + 1] : undefined;
  if (!frame) return 'kube-proxy:0';
  const parts = (frame[1] as string).split(/[\\/]/);
  return `${parts.slice(-2).join('/')}:${frame[2]}`;
}
