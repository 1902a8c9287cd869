// Building and running iptables-restore payloads. Every table is written as one transaction
// with `--noflush`: chains we declare are flushed and refilled, all other chains (and the
// built-in ones, where other software keeps its rules) are left alone.

import type { CommandRunner } from '@kube-proxy-ts/core';

export type IptablesTable = 'filter' | 'nat' | 'mangle' | 'raw';

const NEEDS_QUOTES = /[\s"'\\]/;

/** One argument as iptables-restore reads it: quoted when it holds spaces or quotes. */
export function quoteRestoreArg(arg: string): string {
  if (arg !== '' && !NEEDS_QUOTES.test(arg)) return arg;
  return `"${arg.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Joins argv into one payload line. */
export function formatRestoreLine(args: readonly string[]): string {
  return args.map(quoteRestoreArg).join(' ');
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
      this.declared.add(chain);
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
    this.declared.add(chain);
    this.blockLines.push(`:${chain} - [0:0]`);
    for (const line of rules) this.blockLines.push(`-A ${chain} ${line}`);
    this.blockRules += rules.length;
    return this;
  }

  hasChain(chain: string): boolean {
    return this.declared.has(chain);
  }

  /** `-A CHAIN args...`. `args` may be an argv or an already formatted line. */
  appendRule(chain: string, args: readonly string[] | string): this {
    this.ruleLines.push(`-A ${chain} ${typeof args === 'string' ? args : formatRestoreLine(args)}`);
    return this;
  }

  /** `-I CHAIN [position] args...`. */
  insertRule(chain: string, args: readonly string[] | string, position?: number): this {
    const where = position === undefined ? chain : `${chain} ${position}`;
    this.ruleLines.push(`-I ${where} ${typeof args === 'string' ? args : formatRestoreLine(args)}`);
    return this;
  }

  /** `-D CHAIN args...`: deletes the first rule with exactly this specification. */
  deleteRule(chain: string, args: readonly string[] | string): this {
    this.ruleLines.push(`-D ${chain} ${typeof args === 'string' ? args : formatRestoreLine(args)}`);
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

/** Runs `<restoreCommand> -w --noflush [--counters]` with the payload on stdin. */
export async function runIptablesRestore(
  runner: CommandRunner,
  restoreCommand: string,
  payload: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const args = ['-w', '--noflush'];
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

/** Finds the payload line number in iptables-restore's error output (legacy and nft spellings). */
export function parseRestoreErrorLine(stderr: string): number | undefined {
  const match = /line:? (\d+)/i.exec(stderr);
  return match ? Number(match[1]) : undefined;
}
