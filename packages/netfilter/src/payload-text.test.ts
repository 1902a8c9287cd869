// Every payload writer refuses what would end its line early or smuggle in a statement, and cuts
// comments to the tool's limit.

import { describe, expect, it } from 'vitest';
import { IpsetRestoreWriter } from './ipset.js';
import { formatRestoreLine, RestoreTableWriter } from './iptables-restore.js';
import { splitRuleArgs } from './iptables-save.js';
import { COMMENT_MAX_BYTES, assertNoControlCharacters, joinRuleLines, keptPayloads, ruleLineCount, ruleLines, truncateComment } from './payload-text.js';

const CONTROLS = ['web\n-A KUBE-SERVICES -j X\n#', 'a\rb', 'a\u0000b', 'a\tb', 'a\u007fb', 'a\u0085b'];
const LONG = 'x'.repeat(300);

describe('payload text', () => {
  it('refuses control characters with the value escaped in the message', () => {
    for (const text of CONTROLS) expect(() => assertNoControlCharacters(text, 'comment')).toThrow(/^comment ".*" contains a control character/);
    expect(() => assertNoControlCharacters('a "b" ; c # d', 'comment')).not.toThrow();
  });

  it('cuts comments to each tool\'s limit in bytes, on a character boundary', () => {
    expect(COMMENT_MAX_BYTES).toEqual({ nft: 128, iptables: 255, ipset: 255 });
    const name = `${'n'.repeat(63)}/${'s'.repeat(63)}:${'p'.repeat(15)}`;
    expect(name).toHaveLength(143);
    expect(truncateComment(name, 'nft')).toBe(name.slice(0, 128));
    expect(truncateComment(name, 'iptables')).toBe(name);
    expect(truncateComment(LONG, 'iptables')).toHaveLength(255);
    expect(truncateComment(LONG, 'ipset')).toHaveLength(255);
    // 'é' is two bytes: 64 of them fill 128 bytes, the 65th does not fit.
    expect(truncateComment('é'.repeat(65), 'nft')).toBe('é'.repeat(64));
    expect(truncateComment(`${'a'.repeat(127)}é`, 'nft')).toBe('a'.repeat(127));
  });
});

describe('iptables-restore writer', () => {
  it('refuses control characters in arguments, formatted rules and chain names', () => {
    const nat = new RestoreTableWriter('nat');
    for (const text of CONTROLS) {
      expect(() => formatRestoreLine(['-m', 'comment', '--comment', text, '-j', 'ACCEPT'])).toThrow(/control character/);
      expect(() => nat.appendRule('KUBE-SERVICES', ['-j', text])).toThrow(/control character/);
      expect(() => nat.appendRule('KUBE-SERVICES', `-j ACCEPT ${text}`)).toThrow(/control character/);
      expect(() => nat.writeChain(`KUBE-SVC-${text.length}`, [`-j ${text}`])).toThrow(/control character/);
      expect(() => nat.declareChain(text)).toThrow(/not a valid chain name/);
    }
    for (const chain of [LONG, 'KUBE-SVC-ABCDEFGHIJKLMNOPQRSTU', 'A B', '-A', '']) expect(() => nat.appendRule(chain, ['-j', 'ACCEPT'])).toThrow(/not a valid chain name/);
    expect(() => nat.insertRule('INPUT', ['-j', 'ACCEPT'], 0)).toThrow(/position/);
    // Nothing of the refused input reached the payload.
    expect(nat.toString()).toBe('*nat\nCOMMIT\n');
  });

  it('quotes quotes, semicolons and hashes into one argument, and cuts a long comment to 255 bytes', () => {
    const hostile = 'x" -j DROP ; # "y';
    const line = formatRestoreLine(['-m', 'comment', '--comment', hostile, '-j', 'ACCEPT']);
    expect(splitRuleArgs(line)).toEqual(['-m', 'comment', '--comment', hostile, '-j', 'ACCEPT']);
    const long = splitRuleArgs(formatRestoreLine(['-m', 'comment', '--comment', LONG, '-j', 'ACCEPT']));
    expect(long).toEqual(['-m', 'comment', '--comment', LONG.slice(0, 255), '-j', 'ACCEPT']);
    // Only a comment is cut: any other argument is written whole.
    expect(formatRestoreLine(['--dport', LONG])).toBe(`--dport ${LONG}`);
  });
});

describe('ipset restore writer', () => {
  it('refuses control characters, spaces and over-long names in set names and entries', () => {
    const w = new IpsetRestoreWriter();
    for (const text of [...CONTROLS, 'a b', 'a;b', 'a"b', LONG]) {
      expect(() => w.add(text, '10.0.0.1,tcp:80'), JSON.stringify(text)).toThrow(/ipset set name/);
      if (text !== LONG) expect(() => w.add('KUBE-CLUSTER-IP', text), JSON.stringify(text)).toThrow(/ipset entry/);
      if (text !== LONG) expect(() => w.del('KUBE-CLUSTER-IP', text)).toThrow(/ipset entry/);
      expect(() => w.flush(text)).toThrow(/ipset set name/);
      expect(() => w.destroy(text)).toThrow(/ipset set name/);
      expect(() => w.create({ name: text, type: 'hash:ip', family: 'IPv4' })).toThrow(/ipset set name/);
    }
    expect(w.size).toBe(0);
    w.add('KUBE-LOOP-BACK', 'fd00::1,tcp:80,fd00::1').add('KUBE-LOAD-BALANCER-SOURCE-CIDR', '10.0.0.1,tcp:80,10.0.0.0/8').add('KUBE-NODE-PORT-TCP', '30080');
    expect(w.toString().split('\n')).toHaveLength(4);
  });
});

describe('keptPayloads', () => {
  it('keeps a sync’s payloads up to 1 MB in all, and none beyond', () => {
    const half = 'x'.repeat(1 << 19);
    expect(keptPayloads([half, half])).toEqual([half, half]);
    expect(keptPayloads([half, half, 'y'])).toEqual([]);
    expect(keptPayloads([])).toEqual([]);
  });
});

describe('rules held as one string per chain', () => {
  it('gives back the rules it joined, and counts them', () => {
    for (const rules of [[], ['-j ACCEPT'], ['a', 'b c', '']]) {
      const text = joinRuleLines('KUBE-SVC-X', rules);
      expect(ruleLines(text)).toEqual(rules.length === 1 && rules[0] === '' ? [] : rules);
      expect(ruleLineCount(text)).toBe(ruleLines(text).length);
    }
    expect(ruleLineCount(joinRuleLines('c', ['a', 'b', 'c']))).toBe(3);
  });

  it('refuses a rule with a line break, which would come back as two rules', () => {
    expect(() => joinRuleLines('KUBE-SVC-X', ['-j ACCEPT', '-m comment --comment "a\nb" -j DROP'])).toThrow(/line break/);
  });
});
