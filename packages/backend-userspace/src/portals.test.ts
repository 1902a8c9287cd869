import { describe, expect, it } from 'vitest';
import { cleanupPayload, portalRules, portalsPayload, type Portal } from './portals.js';

const clusterIP: Portal = { kind: 'ClusterIP', ip: '10.96.0.10', port: 80, protocol: 'TCP', sourceRanges: [], comment: 'ns/web:http' };
const nodePort: Portal = { kind: 'NodePort', ip: undefined, port: 30080, protocol: 'UDP', sourceRanges: [], comment: 'ns/web:dns' };

describe('portal rules', () => {
  it('listening on every address: REDIRECT arriving traffic, DNAT the node\'s own to its address', () => {
    const rules = portalRules(clusterIP, { family: 'IPv4', listenIP: undefined, hostIP: '192.168.50.1', proxyPort: 40001 });
    expect(rules.map((r) => `${r.chain} ${r.args.join(' ')}`)).toEqual([
      'KUBE-PORTALS-CONTAINER -m comment --comment ns/web:http -p tcp -m tcp --dport 80 -d 10.96.0.10/32 -j REDIRECT --to-ports 40001',
      'KUBE-PORTALS-HOST -m comment --comment ns/web:http -p tcp -m tcp --dport 80 -d 10.96.0.10/32 -j DNAT --to-destination 192.168.50.1:40001',
    ]);
  });

  it('falls back to REDIRECT for the node\'s own traffic without a node address', () => {
    const rules = portalRules(clusterIP, { family: 'IPv4', listenIP: undefined, hostIP: undefined, proxyPort: 40001 });
    expect(rules.every((r) => r.args.includes('REDIRECT'))).toBe(true);
  });

  it('node ports go to the node-port chains, restricted to nodePortAddresses; IPv6 targets are bracketed', () => {
    const rules = portalRules(nodePort, {
      family: 'IPv6',
      listenIP: 'fd00::1',
      hostIP: undefined,
      proxyPort: 40002,
      nodePortCIDRs: ['fd00::/64', 'fd01::/64'],
    });
    expect(rules.map((r) => `${r.chain} ${r.args.slice(-7).join(' ')}`)).toEqual([
      'KUBE-NODEPORT-CONTAINER 30080 -d fd00::/64 -j DNAT --to-destination [fd00::1]:40002',
      'KUBE-NODEPORT-CONTAINER 30080 -d fd01::/64 -j DNAT --to-destination [fd00::1]:40002',
      'KUBE-NODEPORT-HOST 30080 -d fd00::/64 -j DNAT --to-destination [fd00::1]:40002',
      'KUBE-NODEPORT-HOST 30080 -d fd01::/64 -j DNAT --to-destination [fd00::1]:40002',
    ]);
  });

  it('the payload declares (flushes) all four chains even when empty, and cleanup deletes them', () => {
    expect(portalsPayload([])).toBe(
      '*nat\n:KUBE-PORTALS-CONTAINER - [0:0]\n:KUBE-PORTALS-HOST - [0:0]\n:KUBE-NODEPORT-CONTAINER - [0:0]\n:KUBE-NODEPORT-HOST - [0:0]\nCOMMIT\n',
    );
    expect(cleanupPayload()).toContain('-X KUBE-PORTALS-CONTAINER\n-X KUBE-PORTALS-HOST\n-X KUBE-NODEPORT-CONTAINER\n-X KUBE-NODEPORT-HOST\nCOMMIT');
  });

  it('quotes comments with spaces so iptables-restore reads them as one argument', () => {
    const payload = portalsPayload(
      portalRules({ ...clusterIP, comment: 'ns/a b:http' }, { family: 'IPv4', listenIP: '10.0.0.1', hostIP: undefined, proxyPort: 1 }),
    );
    expect(payload).toContain('--comment "ns/a b:http"');
  });
});
