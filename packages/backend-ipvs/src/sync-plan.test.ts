import { describe, expect, it } from 'vitest';
import { resolveNodePortAddresses } from '@kube-proxy-ts/netfilter';
import { endpointSlice, service } from '@kube-proxy-ts/testing';
import { computeDesired } from './sync-plan.js';
import { ipsetName, ipsetSpecs } from './ipsets.js';
import { proxyState } from './test-support/state.js';

const desired = (state: ReturnType<typeof proxyState>, nodeAddresses = ['192.168.50.1', '127.0.0.1', '10.0.0.5'], nodePortAddresses: string[] = []) =>
  computeDesired({ state, scheduler: 'rr', schedulerFlags: [], nodeAddresses, nodePortAddresses: resolveNodePortAddresses(nodePortAddresses, 'IPv4') });

describe('computeDesired', () => {
  it('limits NodePort virtual services to nodePortAddresses, never loopback', () => {
    const state = proxyState({ services: [service('ns1', 'np', { clusterIP: '10.96.0.1', type: 'NodePort', ports: [{ name: 'p80', port: 80, nodePort: 30001 }] })] });
    expect([...desired(state).virtualServices.keys()]).toEqual(['TCP/10.96.0.1:80', 'TCP/192.168.50.1:30001', 'TCP/10.0.0.5:30001']);
    expect([...desired(state, undefined, ['10.0.0.0/8']).virtualServices.keys()]).toEqual(['TCP/10.96.0.1:80', 'TCP/10.0.0.5:30001']);
  });

  it('uses hash:ip,port entries with node addresses for SCTP node ports', () => {
    const state = proxyState({ services: [service('ns1', 'sctp', { clusterIP: '10.96.0.2', type: 'NodePort', ports: [{ name: 's', port: 9, protocol: 'SCTP', nodePort: 30009 }] })] });
    expect([...desired(state, ['192.168.50.1']).ipsetEntries.get('KUBE-NODE-PORT-SCTP-HASH')!]).toEqual(['192.168.50.1,sctp:30009']);
    expect(desired(state, ['192.168.50.1']).ipsetEntries.get('KUBE-NODE-PORT-TCP')!.size).toBe(0);
  });

  it('internalTrafficPolicy Local without local endpoints: no real servers, counted as no-local-endpoints', () => {
    const state = proxyState({
      services: [service('ns1', 'loc', { clusterIP: '10.96.0.3', internalTrafficPolicy: 'Local' })],
      slices: [endpointSlice('ns1', 'loc', { endpoints: [{ ip: '10.244.2.5', nodeName: 'node2' }] })],
    });
    const d = desired(state);
    expect(d.virtualServices.get('TCP/10.96.0.3:80')!.realServers.size).toBe(0);
    expect([...d.noLocalEndpoints.internal]).toEqual(['ns1/loc']);
  });

  it('serves terminating endpoints only when no ready one exists', () => {
    const slice = (readyToo: boolean) =>
      endpointSlice('ns1', 'web', {
        endpoints: [
          ...(readyToo ? ['10.244.1.11'] : []),
          { ip: '10.244.1.12', ready: false, serving: true, terminating: true },
          { ip: '10.244.1.13', ready: false, serving: false, terminating: true },
        ],
      });
    const rs = (readyToo: boolean) =>
      [...desired(proxyState({ services: [service('ns1', 'web', { clusterIP: '10.96.0.4' })], slices: [slice(readyToo)] })).virtualServices.get('TCP/10.96.0.4:80')!.realServers.keys()];
    expect(rs(true)).toEqual(['10.244.1.11:80']);
    expect(rs(false)).toEqual(['10.244.1.12:80']);
  });

  it('adds health-check node ports and keeps two services off one address:port', () => {
    const lb = service('ns1', 'lb', { clusterIP: '10.96.0.5', type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000, loadBalancerIngress: ['203.0.113.9'] });
    const clash = service('ns1', 'clash', { clusterIP: '10.96.0.6', externalIPs: ['203.0.113.9'] });
    const d = desired(proxyState({ services: [lb, clash] }));
    expect([...d.ipsetEntries.get('KUBE-HEALTH-CHECK-NODE-PORT')!]).toEqual(['32000']);
    expect([...d.ipsetEntries.get('KUBE-LOAD-BALANCER-LOCAL')!]).toEqual(['203.0.113.9,tcp:80']);
    expect(d.problems.join()).toMatch(/TCP\/203\.0\.113\.9:80 already belongs to ns1\/(lb|clash)/);
  });
});

describe('ipset names', () => {
  it('keeps upstream names for IPv4 and uses KUBE-6- for IPv6, within 31 characters', () => {
    expect(ipsetName('KUBE-CLUSTER-IP', 'IPv4')).toBe('KUBE-CLUSTER-IP');
    expect(ipsetName('KUBE-CLUSTER-IP', 'IPv6')).toBe('KUBE-6-CLUSTER-IP');
    expect(ipsetName('KUBE-LOAD-BALANCER-SOURCE-CIDR', 'IPv6')).toBe('KUBE-6-LOAD-BALANCER-SOURCE-CID');
    expect(ipsetSpecs('IPv6').every((s) => s.name.length <= 31 && s.family === 'IPv6')).toBe(true);
    expect(ipsetSpecs('IPv4').map((s) => s.name)).toContain('KUBE-NODE-PORT-LOCAL-SCTP-HASH');
  });
});
