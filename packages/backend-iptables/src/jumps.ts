// The jumps from the built-in chains into ours. They cannot go through a flushing restore (the
// built-in chains hold other software's rules), so we look for them in a listing of the built-in
// chain and insert the missing ones; cleanup deletes them one by one.

import { splitRuleArgs } from '@kube-proxy-ts/netfilter';
import type { JumpRule } from './layout.js';

/** True when `chainRules` (rules as iptables-save prints them) hold `jump`. */
export function hasJump(chainRules: readonly string[], jump: JumpRule): boolean {
  const wanted = [...jump.args, '-j', jump.to].join('\u0000');
  for (const rule of chainRules) {
    const args = splitRuleArgs(rule);
    if (args.join('\u0000') === wanted) return true;
    // iptables may print the matches in another order: accept the same target and comment.
    if (args.at(-1) === jump.to && args.at(-2) === '-j' && sameComment(args, jump.args)) return true;
  }
  return false;
}

function commentOf(args: readonly string[]): string | undefined {
  const i = args.indexOf('--comment');
  return i >= 0 ? args[i + 1] : undefined;
}

function sameComment(a: readonly string[], b: readonly string[]): boolean {
  return commentOf(a) === commentOf(b);
}
