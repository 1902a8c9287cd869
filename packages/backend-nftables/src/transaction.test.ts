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
