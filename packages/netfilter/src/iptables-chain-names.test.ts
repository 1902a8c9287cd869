import { describe, expect, it } from 'vitest';
import { endpointChainName, isServiceChainName, servicePortChainNames } from './iptables-chain-names.js';

describe('iptables chain names', () => {
  it('matches upstream test vectors', () => {
    const names = servicePortChainNames('ns1/svc1:p80', 'TCP');
    expect(names.clusterPolicy).toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(names.localPolicy).toBe('KUBE-SVL-XPGD46QRK7WJZT7O');
    expect(names.external).toBe('KUBE-EXT-XPGD46QRK7WJZT7O');
    expect(names.firewall).toBe('KUBE-FW-XPGD46QRK7WJZT7O');
    expect(endpointChainName('ns1/svc1:p80', 'tcp', '10.180.0.1:80')).toBe('KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('differs by protocol and endpoint and stays within the 28-character limit', () => {
    const tcp = servicePortChainNames('ns1/svc1:p80', 'TCP').clusterPolicy;
    const udp = servicePortChainNames('ns1/svc1:p80', 'UDP').clusterPolicy;
    expect(tcp).not.toBe(udp);
    const sep = endpointChainName('ns1/svc1:p80', 'tcp', '[2001:db8::1]:80');
    expect(sep).not.toBe(endpointChainName('ns1/svc1:p80', 'tcp', '10.180.0.2:80'));
    expect(sep.length).toBeLessThanOrEqual(28);
  });

  it('recognises only per-service chains as service chains', () => {
    expect(isServiceChainName('KUBE-SEP-SXIVWICOYRO3J4NJ')).toBe(true);
    expect(isServiceChainName('KUBE-FW-XPGD46QRK7WJZT7O')).toBe(true);
    expect(isServiceChainName('KUBE-SERVICES')).toBe(false);
    expect(isServiceChainName('KUBE-MARK-MASQ')).toBe(false);
    expect(isServiceChainName('CALI-SVC-X')).toBe(false);
  });
});
