// A Logger that prints nothing and keeps what was logged, so tests can assert on warnings.

import type { Logger } from '@kube-proxy-ts/core';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogEntry {
  readonly level: LogLevel;
  readonly msg: string | undefined;
  /** The object argument merged with the bindings of every child() on the way. */
  readonly fields: Readonly<Record<string, unknown>>;
}

export interface TestLogger extends Logger {
  /** Entries of this logger and all its children, oldest first. */
  readonly entries: readonly LogEntry[];
  /** Entries at `level`. */
  at(level: LogLevel): LogEntry[];
  child(bindings: Record<string, unknown>): TestLogger;
}

export function createTestLogger(): TestLogger {
  const entries: LogEntry[] = [];
  const make = (bindings: Record<string, unknown>): TestLogger => {
    const log = (level: LogLevel) => (obj: object | string, msg?: string) => {
      if (typeof obj === 'string') entries.push({ level, msg: obj, fields: { ...bindings } });
      else entries.push({ level, msg, fields: { ...bindings, ...(obj as Record<string, unknown>) } });
    };
    return {
      entries,
      at: (level) => entries.filter((e) => e.level === level),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make({});
}
