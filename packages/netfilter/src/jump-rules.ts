// Jumps from the built-in chains (PREROUTING, INPUT, ...) into a backend's own chains. The
// built-in chains hold other software's rules, so they are never flushed or restored whole: a
// jump is looked for, inserted alone when missing, and deleted alone at cleanup.

import type { CommandRunner } from '@kube-proxy-ts/core';
import { splitRuleArgs } from './iptables-save.js';
import type { IptablesTable } from './iptables-restore.js';

export interface JumpRule {
  readonly table: IptablesTable;
  /** The built-in chain holding the jump. */
  readonly from: string;
  readonly to: string;
  /** Arguments before `-j`, as upstream writes them (matches, then the comment). */
  readonly args: readonly string[];
  /** Where a missing jump goes: first in the chain (default) or last. */
  readonly position?: 'first' | 'last';
}

/** A jump from `from` to `to` with upstream's comment match after `matches`. */
export function jumpRule(table: IptablesTable, from: string, to: string, comment: string, matches: readonly string[] = [], position?: 'first' | 'last'): JumpRule {
  return { table, from, to, args: [...matches, ...(comment ? ['-m', 'comment', '--comment', comment] : [])], ...(position ? { position } : {}) };
}

/** The rule's arguments, `-j` included. */
export function jumpRuleArgs(jump: JumpRule): string[] {
  return [...jump.args, '-j', jump.to];
}

function commentOf(args: readonly string[]): string | undefined {
  const i = args.indexOf('--comment');
  return i >= 0 ? args[i + 1] : undefined;
}

/** Whether `rule` (as iptables-save prints it, without `-A CHAIN`) is `jump`. */
export function isJumpRule(rule: string, jump: JumpRule): boolean {
  const args = splitRuleArgs(rule);
  if (args.join('\u0000') === jumpRuleArgs(jump).join('\u0000')) return true;
  // iptables may print the matches in another order: the same target and comment will do.
  return args.at(-1) === jump.to && args.at(-2) === '-j' && commentOf(args) === commentOf(jump.args);
}

/** Whether the rules of the built-in chain hold `jump`. */
export function hasJump(chainRules: readonly string[], jump: JumpRule): boolean {
  return chainRules.some((rule) => isJumpRule(rule, jump));
}

export interface JumpCommandOptions {
  /** The iptables binary of the detected flavour and family. */
  readonly iptables: string;
  readonly timeoutMs: number;
}

/** Adds each jump that `iptables -C` does not find, at its position. Throws on a failed insert. */
export async function ensureJumps(runner: CommandRunner, jumps: readonly JumpRule[], options: JumpCommandOptions): Promise<number> {
  let added = 0;
  for (const jump of jumps) {
    const run = (args: string[]) => runner.run(options.iptables, ['-w', '-t', jump.table, ...args], { timeoutMs: options.timeoutMs });
    if ((await run(['-C', jump.from, ...jumpRuleArgs(jump)])).code === 0) continue;
    const where = jump.position === 'last' ? ['-A', jump.from] : ['-I', jump.from, '1'];
    const r = await run([...where, ...jumpRuleArgs(jump)]);
    if (r.code !== 0) throw new Error(`adding the jump from ${jump.table} ${jump.from} to ${jump.to}: ${r.stderr.trim() || `exit ${r.code}`}`);
    added++;
  }
  return added;
}

/** A jump added more than once (by an older proxy) is deleted as often, up to this many times. */
const MAX_COPIES = 8;

/** Deletes every copy of each jump; a jump that is not there is no error. */
export async function deleteJumps(runner: CommandRunner, jumps: readonly JumpRule[], options: JumpCommandOptions): Promise<void> {
  for (const jump of jumps) {
    for (let i = 0; i < MAX_COPIES; i++) {
      const r = await runner
        .run(options.iptables, ['-w', '-t', jump.table, '-D', jump.from, ...jumpRuleArgs(jump)], { timeoutMs: options.timeoutMs })
        .catch(() => undefined);
      if (r?.code !== 0) break;
    }
  }
}
