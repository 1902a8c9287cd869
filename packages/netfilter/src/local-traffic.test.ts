import { describe, expect, it } from 'vitest';
import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { createLocalTrafficDetector, iptablesLocalMatch, nftablesLocalMatch } from './local-traffic.js';

const node = { podCIDRs: ['10.0.1.0/24', 'fd00:1::/64'] };

function config(overrides: Partial<ReturnType<typeof defaultProxyConfig>>) {
  return { ...defaultProxyConfig(), ...overrides };
}

describe('createLocalTrafficDetector', () => {
  it('ClusterCIDR picks the CIDR of the family', () => {
    const cfg = config({ clusterCIDR: '10.0.0.0/14, fd00::/48' });
    expect(createLocalTrafficDetector(cfg, 'IPv4', node)).toEqual({ kind: 'cidr', cidr: '10.0.0.0/14' });
    expect(createLocalTrafficDetector(cfg, 'IPv6', node)).toEqual({ kind: 'cidr', cidr: 'fd00::/48' });
    expect(createLocalTrafficDetector(config({ clusterCIDR: '' }), 'IPv4', node).kind).toBe('none');
  });

  it('NodeCIDR uses the node pod CIDR', () => {
    const cfg = config({ detectLocalMode: 'NodeCIDR' });
    expect(createLocalTrafficDetector(cfg, 'IPv6', node)).toEqual({ kind: 'cidr', cidr: 'fd00:1::/64' });
    expect(createLocalTrafficDetector(cfg, 'IPv4', { podCIDRs: [] }).kind).toBe('none');
  });

  it('renders interface detectors for iptables and nftables', () => {
    const bridge = createLocalTrafficDetector(config({ detectLocalMode: 'BridgeInterface', detectLocal: { bridgeInterface: 'cbr0', interfaceNamePrefix: '' } }), 'IPv4', node);
    expect(iptablesLocalMatch(bridge, false)).toEqual(['-i', 'cbr0']);
    expect(iptablesLocalMatch(bridge, true)).toEqual(['!', '-i', 'cbr0']);
    expect(nftablesLocalMatch(bridge, true)).toBe('iifname != "cbr0"');
    const prefix = createLocalTrafficDetector(config({ detectLocalMode: 'InterfaceNamePrefix', detectLocal: { bridgeInterface: '', interfaceNamePrefix: 'veth' } }), 'IPv4', node);
    expect(iptablesLocalMatch(prefix, false)).toEqual(['-i', 'veth+']);
    expect(nftablesLocalMatch(prefix, false)).toBe('iifname "veth*"');
  });

  it('renders CIDR detectors and nothing for none', () => {
    expect(iptablesLocalMatch({ kind: 'cidr', cidr: '10.0.0.0/8' }, true)).toEqual(['!', '-s', '10.0.0.0/8']);
    expect(nftablesLocalMatch({ kind: 'cidr', cidr: 'fd00::/48' }, false)).toBe('ip6 saddr fd00::/48');
    expect(iptablesLocalMatch({ kind: 'none', reason: 'x' }, true)).toEqual([]);
  });
});
