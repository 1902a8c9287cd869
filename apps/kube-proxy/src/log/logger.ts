// pino logging with upstream-like verbosity: klog's -v levels map onto pino levels, so
// `-v=2` shows the per-sync debug lines and `-v=5` and above shows trace.

import pino, { type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from '../cli/options.js';

export type { PinoLogger };

/** klog verbosity -> pino level: 0-1 info, 2-4 debug, 5+ trace. */
export function levelForVerbosity(v: number): LogLevel {
  if (v >= 5) return 'trace';
  if (v >= 2) return 'debug';
  return 'info';
}

export interface LoggerOptions {
  readonly format: 'json' | 'text';
  readonly level: LogLevel;
  /** Where lines go; default stderr (as klog). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions): PinoLogger {
  const base = { level: opts.level, name: 'kube-proxy', timestamp: pino.stdTimeFunctions.isoTime };
  if (opts.format === 'text') {
    // Synchronous pretty-printing in this thread: no worker to lose lines when the process exits.
    return pino(base, pretty({ sync: true, destination: opts.destination ?? 2, colorize: false, ignore: 'pid,hostname' }));
  }
  return pino(base, opts.destination ?? pino.destination({ fd: 2, sync: true }));
}
