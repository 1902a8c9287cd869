// Building and running iptables-restore payloads. Every table is written as one transaction
// with `--noflush`: chains we declare are flushed and refilled, all other chains (and the
// built-in ones, where other software keeps its rules) are left alone.

import type { CommandRunner } from '@kube-proxy-ts/core';
import { assertNoControlCharacters, truncateComment } from './payload-text.js';

export type IptablesTable = 'filter' | 'nat' | 'mangle' | 'raw';

// Spaces, quotes and backslashes are quoted; control characters, looked for on the same slow path, refused.
// eslint-disable-next-line no-control-regex -- one test per argument on the fast path
const NEEDS_CARE = /[\s"'\\\u0000-\u001f\u007f-\u009f]/;
/** iptables' limit is 28 characters (29 bytes with the NUL); a name is one token. */
const CHAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}$/;

/** One argument as iptables-restore reads it: quoted when it holds spaces or quotes. */
export function quoteRestoreArg(arg: string): string {
  if (arg !== '' && !NEEDS_CARE.test(arg)) return arg;
  assertNoControlCharacters(arg, 'iptables-restore argument');
  return `"${arg.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Joins argv into one payload line; a `--comment` is cut to the comment match's limit. */
export function formatRestoreLine(args: readonly string[]): string {
  return args.map((arg, i) => quoteRestoreArg(i > 0 && args[i - 1] === '--comment' ? truncateComment(arg, 'iptables') : arg)).join(' ');
}

function checkedChain(chain: string): string {
  if (!CHAIN_NAME.test(chain)) throw new Error(`iptables chain name ${JSON.stringify(chain)} is not a valid chain name`);
  return chain;
}

/** An already formatted rule line: one line, whatever its origin. */
function checkedLine(line: string): string {
  assertNoControlCharacters(line, 'iptables-restore rule');
  return line;
}

function ruleText(args: readonly string[] | string): string {
  return typeof args === 'string' ? checkedLine(args) : formatRestoreLine(args);
}

/**
 * The statements of one table: chain declarations, then whole chains (each declaration followed
 * by its rules), then single rules, then chain deletions.
 */
export class RestoreTableWriter {
  private readonly chainLines: string[] = [];
  private readonly blockLines: string[] = [];
  private blockRules = 0;
  private readonly ruleLines: string[] = [];
  private readonly deleteLines: string[] = [];
  private readonly declared = new Set<string>();

  constructor(readonly name: IptablesTable) {}

  /** `:CHAIN - [0:0]`: creates the chain if missing and flushes it (also with --noflush). */
  declareChain(chain: string): this {
    if (!this.declared.has(chain)) {
      this.declared.add(checkedChain(chain));
      this.chainLines.push(`:${chain} - [0:0]`);
    }
    return this;
  }

  /**
   * Declares (so flushes) a chain and writes its rules right after the declaration. Chains a
   * rule jumps to must already exist or be written earlier.
   */
  writeChain(chain: string, rules: readonly string[]): this {
    if (this.declared.has(chain)) throw new Error(`chain ${chain} is already declared in this ${this.name} payload`);
    const lines = rules.map((line) => `-A ${chain} ${checkedLine(line)}`);
    this.declared.add(checkedChain(chain));
    this.blockLines.push(`:${chain} - [0:0]`, ...lines);
    this.blockRules += rules.length;
    return this;
  }

  hasChain(chain: string): boolean {
    return this.declared.has(chain);
  }

  /** `-A CHAIN args...`. `args` may be an argv or an already formatted line. */
  appendRule(chain: string, args: readonly string[] | string): this {
    this.ruleLines.push(`-A ${checkedChain(chain)} ${ruleText(args)}`);
    return this;
  }

  /** `-I CHAIN [position] args...`. */
  insertRule(chain: string, args: readonly string[] | string, position?: number): this {
    if (position !== undefined && !(Number.isInteger(position) && position > 0)) throw new Error(`rule position ${position} is not a positive integer`);
    const where = position === undefined ? checkedChain(chain) : `${checkedChain(chain)} ${position}`;
    this.ruleLines.push(`-I ${where} ${ruleText(args)}`);
    return this;
  }

  /** `-D CHAIN args...`: deletes the first rule with exactly this specification. */
  deleteRule(chain: string, args: readonly string[] | string): this {
    this.ruleLines.push(`-D ${checkedChain(chain)} ${ruleText(args)}`);
    return this;
  }

  /** Flushes and deletes a chain; nothing may still jump to it once the payload is applied. */
  deleteChain(chain: string): this {
    this.declareChain(chain);
    this.deleteLines.push(`-X ${chain}`);
    return this;
  }

  get chainCount(): number {
    return this.declared.size;
  }

  get ruleCount(): number {
    return this.ruleLines.length + this.blockRules;
  }

  get deletedChainCount(): number {
    return this.deleteLines.length;
  }

  isEmpty(): boolean {
    return this.declared.size === 0 && this.ruleLines.length === 0 && this.deleteLines.length === 0;
  }

  /** The table's section of a payload, `*table` through `COMMIT`. */
  toString(): string {
    const parts = [`*${this.name}`, ...this.chainLines, ...this.blockLines, ...this.ruleLines, ...this.deleteLines, 'COMMIT'];
    return `${parts.join('\n')}\n`;
  }
}

export interface RestoreOptions {
  /** Keep counters of rules that stay (`--counters`). Default true. */
  readonly counters?: boolean;
  /** Kill iptables-restore after this long. */
  readonly timeoutMs?: number;
}

export interface RestoreResult {
  readonly ok: boolean;
  readonly code: number;
  readonly stderr: string;
  /** 1-based line of the payload iptables-restore rejected, when it said so. */
  readonly failedLine?: number;
  /** That line's text, for the log. */
  readonly failedLineText?: string;
}

/**
 * Wait at most 5 s for the xtables lock, polling every 100 ms, as upstream does for restore: a
 * bare `-w` waits for ever behind whoever holds the lock. (iptables-nft-restore 1.8.9 accepts both
 * silently; iptables-legacy-restore 1.8.9 ignores `-W` with a warning on stderr.)
 */
export const RESTORE_WAIT_ARGS: readonly string[] = ['-w', '5', '-W', '100000'];

/** Runs `<restoreCommand> -w 5 -W 100000 --noflush [--counters]` with the payload on stdin. */
export async function runIptablesRestore(
  runner: CommandRunner,
  restoreCommand: string,
  payload: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const args = [...RESTORE_WAIT_ARGS, '--noflush'];
  if (options.counters !== false) args.push('--counters');
  const result = await runner.run(restoreCommand, args, { stdin: payload, ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
  if (result.code === 0) return { ok: true, code: 0, stderr: result.stderr };
  const failedLine = parseRestoreErrorLine(result.stderr);
  if (failedLine === undefined) return { ok: false, code: result.code, stderr: result.stderr };
  return {
    ok: false,
    code: result.code,
    stderr: result.stderr,
    failedLine,
    failedLineText: payload.split('\n')[failedLine - 1] ?? '',
  };
}

/**
 * One line for a log or a SyncResult: `<command> failed (<context>) at line N (<text>): <stderr>`,
 * the line only when iptables-restore named it.
 */
export function describeRestoreFailure(command: string, result: RestoreResult, context?: string): string {
  const where = result.failedLine !== undefined ? ` at line ${result.failedLine} (${result.failedLineText ?? ''})` : '';
  return `${command} failed${context ? ` (${context})` : ''}${where}: ${result.stderr.trim() || `exit ${result.code}`}`;
}

/** Finds the payload line number in iptables-restore's error output (legacy and nft spellings). */
export function parseRestoreErrorLine(stderr: string): number | undefined {
  const match = /line:? (\d+)/i.exec(stderr);
  return match ? Number(match[1]) : undefined;
}
