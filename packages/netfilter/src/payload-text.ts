// Text that goes into iptables-restore, nft and ipset payloads. These tools read one statement
// per line, so a newline (or any control character) in a name or comment would be read as a
// statement of its own. Core refuses such names before they get here; the writers check again,
// so that no future caller can turn data into rules.

// C0 controls, DEL and C1 controls. Tabs are refused too: writers put their own separators.
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Throws when `text` holds a control character; `what` names it in the error. */
export function assertNoControlCharacters(text: string, what: string): void {
  if (CONTROL.test(text)) throw new Error(`${what} ${JSON.stringify(text)} contains a control character and cannot be written into a payload`);
}

/**
 * The longest comment each tool takes, in bytes. nft refuses longer ones ("comment too long,
 * 128 characters maximum allowed") and with them the whole transaction; the xt comment match
 * holds 256 bytes with the terminating NUL (legacy iptables refuses more, iptables-nft cuts);
 * ipset refuses comments over 255.
 */
export const COMMENT_MAX_BYTES = { nft: 128, iptables: 255, ipset: 255 } as const;

export type CommentTool = keyof typeof COMMENT_MAX_BYTES;

const encoder = new TextEncoder();

/**
 * `comment` cut to `tool`'s limit, on a character boundary. Comments only describe rules (the
 * hashed names identify them), so a cut one is as good, and upstream cuts them too.
 */
export function truncateComment(comment: string, tool: CommentTool): string {
  const max = COMMENT_MAX_BYTES[tool];
  // A UTF-16 unit is at most 3 UTF-8 bytes: short comments need no encoding.
  if (comment.length * 3 <= max || encoder.encode(comment).length <= max) return comment;
  let out = '';
  let bytes = 0;
  for (const ch of comment) {
    const size = encoder.encode(ch).length;
    if (bytes + size > max) break;
    out += ch;
    bytes += size;
  }
  return out;
}

/**
 * What a backend keeps of its last sync's payloads (for inspection, tests and dry runs): all of them
 * up to 1 MB in all, none beyond. A full sync at scale writes tens of MB: not held until the next sync.
 */
export function keptPayloads(payloads: readonly string[]): string[] {
  return payloads.reduce((n, p) => n + p.length, 0) <= 1 << 20 ? [...payloads] : [];
}

/**
 * A chain's rules held as one string, a rule a line. Backends remember the rules of every
 * service chain they wrote (10^5 chains in a large cluster); one string per chain takes about
 * a third less memory than an array of strings. A rule with a line break would come back as two,
 * so none may hold one.
 */
export function joinRuleLines(chain: string, rules: readonly string[]): string {
  for (const r of rules) if (r.includes('\n')) throw new Error(`rule ${JSON.stringify(r)} of chain ${chain} contains a line break`);
  return rules.join('\n');
}

/** The rules of `joinRuleLines`, as an array again. */
export function ruleLines(rules: string): string[] {
  return rules === '' ? [] : rules.split('\n');
}

/** How many rules `joinRuleLines` joined. */
export function ruleLineCount(rules: string): number {
  if (rules === '') return 0;
  let n = 1;
  for (let at = rules.indexOf('\n'); at >= 0; at = rules.indexOf('\n', at + 1)) n++;
  return n;
}
