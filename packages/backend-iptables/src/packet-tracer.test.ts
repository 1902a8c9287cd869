import { describe, expect, it } from 'vitest';
import { tracePacket } from './packet-tracer.js';

const dump = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
-A PREROUTING -s 198.51.100.0/24 -j RETURN
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-1
-A KUBE-SVC-A -j KUBE-SEP-2
-A KUBE-SEP-1 -s 10.0.0.1/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:8080
-A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.0.0.2:8080
COMMIT
*filter
:FORWARD DROP [0:0]
:KUBE-X - [0:0]
-A FORWARD -j KUBE-X
-A KUBE-X -d 10.0.0.2/32 -j REJECT
COMMIT
`;
const local = { localAddresses: ['192.168.0.1'] };

describe('tracePacket', () => {
  it('explores both sides of a random match, follows the dump\'s own built-in chains and applies filter verdicts after DNAT', () => {
    const r = tracePacket(dump, { src: '10.0.0.9', dst: '10.96.0.1', dport: 80, protocol: 'tcp' }, local);
    expect(r.dnatTargets).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
    expect(r.chains).toEqual(expect.arrayContaining(['PREROUTING', 'KUBE-SERVICES', 'KUBE-SVC-A', 'KUBE-SEP-1', 'KUBE-SEP-2', 'FORWARD', 'KUBE-X']));
    const toSecond = r.outcomes.find((o) => o.dnat === '10.0.0.2:8080')!;
    expect(toSecond.verdict).toBe('REJECT');
    expect(r.outcomes.find((o) => o.dnat === '10.0.0.1:8080')!.verdict).toBeUndefined();
  });

  it('honours RETURN, protocol and port mismatches, and the hairpin mark', () => {
    expect(tracePacket(dump, { src: '198.51.100.7', dst: '10.96.0.1', dport: 80, protocol: 'tcp' }, local).dnatTargets).toEqual([]);
    expect(tracePacket(dump, { src: '10.0.0.9', dst: '10.96.0.1', dport: 80, protocol: 'udp' }, local).dnatTargets).toEqual([]);
    expect(tracePacket(dump, { src: '10.0.0.9', dst: '10.96.0.1', dport: 81, protocol: 'tcp' }, local).dnatTargets).toEqual([]);
    const hairpin = tracePacket(dump, { src: '10.0.0.1', dst: '10.96.0.1', dport: 80, protocol: 'tcp' }, local);
    expect(hairpin.outcomes.find((o) => o.dnat === '10.0.0.1:8080')!.masquerade).toBe(true);
    expect(hairpin.outcomes.find((o) => o.dnat === '10.0.0.2:8080')!.masquerade).toBe(false);
  });

  it('gives each endpoint its share of new connections, as the statistic rules split them', () => {
    const three = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SVC-A - [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j DNAT --to-destination 10.0.0.1:80
-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.0.0.2:80
-A KUBE-SVC-A -j DNAT --to-destination 10.0.0.3:80
COMMIT
`;
    const r = tracePacket(three, { src: '10.0.0.9', dst: '10.96.0.1', dport: 80, protocol: 'tcp' }, local);
    expect(r.outcomes.map((o) => [o.dnat, o.probability.toFixed(4)])).toEqual([
      ['10.0.0.1:80', '0.3333'],
      ['10.0.0.2:80', '0.3333'],
      ['10.0.0.3:80', '0.3333'],
    ]);
  });

  it('refuses matches it does not understand instead of guessing', () => {
    const odd = '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m owner --uid-owner 0 -j RETURN\nCOMMIT\n';
    expect(() => tracePacket(odd, { src: '1.1.1.1', dst: '2.2.2.2', dport: 1, protocol: 'tcp' }, local)).toThrow(/unsupported match --uid-owner/);
    // On a live node other programs' rules are explored both ways and reported instead.
    const lenient = tracePacket(odd, { src: '1.1.1.1', dst: '2.2.2.2', dport: 1, protocol: 'tcp' }, { ...local, lenient: true });
    expect(lenient.outcomes.map((o) => o.unknown)).toEqual([['-m owner --uid-owner 0'], ['-m owner --uid-owner 0']]);
  });
});
