import { describe, expect, it } from 'vitest';
import { NftTransaction } from './transaction.js';

const map = { kind: 'map', type: 'ipv4_addr . inet_proto . inet_service : verdict', comment: 'Service IPs' } as const;

describe('nft transaction', () => {
  it('writes rules and element additions in forms that need no chain listing', () => {
    const tx = new NftTransaction('ip', 'kube-proxy');
    tx.addChain('c').flushChain('c').addChainRules('c', ['jump d', 'meta l4proto tcp dnat to 10.0.0.1:80']);
    tx.addElements('service-ips', [['10.96.0.1 . tcp . 80', { value: 'goto c', comment: 'ns/s:p' }]], map);
    expect(tx.toString()).toBe(
      [
        'add chain ip kube-proxy c',
        'flush chain ip kube-proxy c',
        'add chain ip kube-proxy c {',
        '\tjump d',
        '\tmeta l4proto tcp dnat to 10.0.0.1:80',
        '}',
        'add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "Service IPs" ; elements = { 10.96.0.1 . tcp . 80 comment "ns/s:p" : goto c } ; }',
        '',
      ].join('\n'),
    );
    expect(tx.size).toBe(5); // two commands, two rules, one element statement
    expect(tx.needsChainCache).toBe(false);
  });

  it('knows which commands make nft read every chain first', () => {
    for (const write of [
      (t: NftTransaction) => t.addRule('c', 'jump d'),
      (t: NftTransaction) => t.addElements('m', [['10.0.0.1', { value: 'goto c' }]]),
      (t: NftTransaction) => t.deleteElements('m', ['10.0.0.1']),
      (t: NftTransaction) => t.deleteChain('c'),
      (t: NftTransaction) => t.deleteContainer('set', 's'),
    ]) {
      const tx = new NftTransaction('ip', 'kube-proxy');
      write(tx);
      expect(tx.needsChainCache).toBe(true);
      expect(new NftTransaction('ip', 'kube-proxy').append(tx).needsChainCache).toBe(true);
    }
  });

  it('cuts element statements at 1000 elements', () => {
    const tx = new NftTransaction('ip', 'kube-proxy');
    const els = Array.from({ length: 2500 }, (_, i) => [`10.0.${i >> 8}.${i & 255}`, { value: '' }] as const);
    tx.addElements('cluster-ips', els, { kind: 'set', type: 'ipv4_addr' });
    expect(tx.lines).toHaveLength(3);
    expect(tx.lines[2]).toMatch(/^add set ip kube-proxy cluster-ips \{ type ipv4_addr ; elements = \{ 10\.0\.7\.208, .* \} ; \}$/);
  });
});

describe('nft transaction: hostile and over-long text', () => {
  const CONTROLS = ['web\nflush ruleset\n', 'a\rb', 'a\u0000b', 'a\tb'];
  const longestName = `${'n'.repeat(63)}/${'s'.repeat(63)}:${'p'.repeat(15)}`;

  it('refuses names that are not one nft token', () => {
    const tx = new NftTransaction('ip', 'kube-proxy');
    for (const name of [...CONTROLS, 'a b', 'a;b', 'a"b', 'c { flush ruleset }', '1abc', '', 'x'.repeat(300)]) {
      expect(() => tx.addChain(name), JSON.stringify(name)).toThrow(/not a valid name/);
      expect(() => tx.flushContainer('set', name)).toThrow(/not a valid name/);
      expect(() => tx.addElements(name, [['10.0.0.1', { value: '' }]])).toThrow(/not a valid name/);
    }
    expect(() => new NftTransaction('ip', 'kube-proxy ; flush ruleset')).toThrow(/not a valid name/);
    expect(tx.toString()).toBe('');
  });

  it('refuses rules, keys and values that would end their command and start another', () => {
    const tx = new NftTransaction('ip', 'kube-proxy');
    for (const text of [...CONTROLS, 'accept ; flush ruleset', 'accept # rest', 'accept comment "open']) {
      expect(() => tx.addChainRules('c', [text]), JSON.stringify(text)).toThrow(/nft statement/);
      expect(() => tx.addRule('c', text)).toThrow(/nft statement/);
      expect(() => tx.addElements('m', [[text, { value: 'goto c' }]])).toThrow(/nft statement/);
      expect(() => tx.addElements('m', [['10.0.0.1', { value: text }]])).toThrow(/nft statement/);
      expect(() => tx.deleteElements('m', [text])).toThrow(/nft statement/);
    }
    expect(tx.toString()).toBe('');
    // Inside a string, ';' and '#' are text.
    tx.addChainRules('c', ['fib saddr type local goto x comment "a ; b # c"']);
    expect(tx.lines).toContain('\tfib saddr type local goto x comment "a ; b # c"');
  });

  it('keeps a quote from ending a comment, refuses control characters, and cuts comments to 128 bytes', () => {
    const tx = new NftTransaction('ip', 'kube-proxy');
    tx.addElements('no-endpoint-services', [['10.96.0.1 . tcp . 80', { value: 'goto reject-chain', comment: 'x" ; flush ruleset ; "' }]], map);
    expect(tx.lines[0]).toContain('comment "x ; flush ruleset ; "');
    for (const text of CONTROLS) {
      expect(() => tx.addChain('c', { comment: text })).toThrow(/nft comment/);
      expect(() => tx.addElements('m', [['10.0.0.1', { value: '', comment: text }]])).toThrow(/nft comment/);
    }
    // The longest valid ServicePortName, as on a no-endpoint element: nft refuses comments over 128.
    tx.addElements('no-endpoint-services', [['10.96.0.2 . tcp . 80', { value: 'goto reject-chain', comment: longestName }]], map);
    tx.addRule('c', 'accept', longestName).addTable(longestName).addContainer('set', 's', 'ipv4_addr', { comment: longestName });
    const comments = tx.toString().match(/comment "[^"]*"/g)!.filter((c) => c.includes('nnn'));
    expect(comments).toHaveLength(4);
    for (const c of comments) expect(c).toBe(`comment "${longestName.slice(0, 128)}"`);
  });
});
