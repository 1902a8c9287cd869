import { describe, expect, it } from 'vitest';
import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { service } from './service.js';
import { endpointSlice, LAST_CHANGE_TRIGGER_TIME_ANNOTATION, SERVICE_NAME_LABEL } from './endpoint-slice.js';
import { node, nodeInfo, ZONE_LABEL } from './node.js';
import { deepMerge, proxyConfig } from './proxy-config.js';

describe('service()', () => {
  it('applies API-server defaults to a bare ClusterIP service', () => {
    const svc = service('ns1', 'svc1');
    expect(svc.metadata).toMatchObject({ namespace: 'ns1', name: 'svc1' });
    expect(svc.spec).toMatchObject({
      type: 'ClusterIP',
      sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: [{ name: 'p80', port: 80, protocol: 'TCP', targetPort: 80 }],
    });
    expect(svc.spec!.clusterIP).toMatch(/^172\.30\.\d+\.\d+$/);
    expect(svc.spec!.clusterIPs).toEqual([svc.spec!.clusterIP]);
    expect(svc.spec!.externalTrafficPolicy).toBeUndefined();
    expect(svc.spec!.ports![0]!.nodePort).toBeUndefined();
  });

  it('gives the same ClusterIP for the same name and different ones for different names', () => {
    expect(service('ns1', 'a').spec!.clusterIP).toBe(service('ns1', 'a').spec!.clusterIP);
    expect(service('ns1', 'a').spec!.clusterIP).not.toBe(service('ns1', 'b').spec!.clusterIP);
    expect(service('ns1', 'a', { ipFamily: 'IPv6' }).spec).toMatchObject({ ipFamilies: ['IPv6'] });
  });

  it('allocates stable node ports and defaults externalTrafficPolicy for NodePort and LoadBalancer', () => {
    const np = service('ns1', 'np', { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { port: 80, nodePort: 30080 }] });
    expect(np.spec!.externalTrafficPolicy).toBe('Cluster');
    expect(np.spec!.ports![0]!.nodePort).toBeGreaterThanOrEqual(30000);
    expect(np.spec!.ports![0]!.nodePort).toBeLessThanOrEqual(32767);
    expect(np.spec!.ports![1]!.nodePort).toBe(30080);
    const lb = service('ns1', 'lb', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, loadBalancerIngress: ['5.6.7.8', { ip: '5.6.7.9', ipMode: 'Proxy' }] });
    expect(lb.spec!.ports![0]!.nodePort).toBeUndefined();
    expect(lb.status!.loadBalancer!.ingress).toEqual([{ ip: '5.6.7.8' }, { ip: '5.6.7.9', ipMode: 'Proxy' }]);
  });

  it('defaults the ClientIP affinity timeout to 10800 s, keeps headless and ExternalName shapes', () => {
    expect(service('ns1', 's', { sessionAffinity: 'ClientIP' }).spec!.sessionAffinityConfig).toEqual({ clientIP: { timeoutSeconds: 10800 } });
    const headless = service('ns1', 'db', { clusterIP: 'None' });
    expect(headless.spec).toMatchObject({ clusterIP: 'None', clusterIPs: ['None'] });
    const ext = service('ns1', 'ext', { type: 'ExternalName' });
    expect(ext.spec).toMatchObject({ type: 'ExternalName', externalName: 'ext.example.com' });
    expect(ext.spec!.clusterIP).toBeUndefined();
  });

  it('applies mutators after the defaults', () => {
    const svc = service('ns1', 's', { labels: { a: 'b' } }, (s) => {
      s.spec!.externalIPs = ['1.2.3.4'];
    });
    expect(svc.metadata!.labels).toEqual({ a: 'b' });
    expect(svc.spec!.externalIPs).toEqual(['1.2.3.4']);
    expect(service('ns1', 's', (s) => (s.spec!.clusterIP = '10.0.0.1')).spec!.clusterIP).toBe('10.0.0.1');
  });
});

describe('endpointSlice()', () => {
  it('labels the slice for its service and defaults conditions from ready', () => {
    const slice = endpointSlice('ns1', 'svc1', {
      endpoints: ['10.180.0.1', { ip: '10.180.0.2', ready: false }, { ip: '10.180.0.3', ready: false, serving: true, terminating: true }],
    });
    expect(slice.metadata!.labels![SERVICE_NAME_LABEL]).toBe('svc1');
    expect(slice.addressType).toBe('IPv4');
    expect(slice.ports).toEqual([{ name: 'p80', port: 80, protocol: 'TCP' }]);
    expect(slice.endpoints.map((e) => [e.addresses, e.conditions])).toEqual([
      [['10.180.0.1'], { ready: true, serving: true, terminating: false }],
      [['10.180.0.2'], { ready: false, serving: false, terminating: false }],
      [['10.180.0.3'], { ready: false, serving: true, terminating: true }],
    ]);
  });

  it('carries nodeName, zone, zone and node hints, ports, and the trigger-time annotation', () => {
    const slice = endpointSlice('ns1', 'svc1', 'svc1-b', {
      endpoints: [{ ip: 'fd00::1', nodeName: 'node1', zone: 'zone-a', zoneHints: ['zone-a'], nodeHints: ['node1'] }],
      ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }],
      lastChangeTriggerTime: new Date('2026-01-02T03:04:05Z'),
    });
    expect(slice.metadata!.name).toBe('svc1-b');
    expect(slice.addressType).toBe('IPv6');
    expect(slice.endpoints[0]).toMatchObject({
      nodeName: 'node1',
      zone: 'zone-a',
      hints: { forZones: [{ name: 'zone-a' }], forNodes: [{ name: 'node1' }] },
    });
    expect(slice.ports).toEqual([{ name: 'dns', port: 5353, protocol: 'UDP' }]);
    expect(slice.metadata!.annotations![LAST_CHANGE_TRIGGER_TIME_ANNOTATION]).toBe('2026-01-02T03:04:05.000Z');
  });

  it('rejects an endpoint without an address', () => {
    expect(() => endpointSlice('ns1', 's', { endpoints: [{ ready: true }] })).toThrow(/needs `ip`/);
  });
});

describe('node() and nodeInfo()', () => {
  it('sets hostname and zone labels, pod CIDRs and addresses', () => {
    const n = node('node1', { zone: 'zone-a', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], addresses: ['192.168.50.1'] });
    expect(n.metadata!.labels).toEqual({ 'kubernetes.io/hostname': 'node1', [ZONE_LABEL]: 'zone-a' });
    expect(n.spec).toMatchObject({ podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] });
    expect(n.status!.addresses).toEqual([
      { type: 'InternalIP', address: '192.168.50.1' },
      { type: 'Hostname', address: 'node1' },
    ]);
    expect(node('n2', { toBeDeleted: true }).spec!.taints![0]!.key).toBe('ToBeDeletedByClusterAutoscaler');
  });

  it('nodeInfo keeps only addresses and CIDRs of its family', () => {
    const info = nodeInfo({ ipFamily: 'IPv6', addresses: ['192.168.50.1', 'fd00::1'], podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], zone: 'z' });
    expect(info).toEqual({
      name: 'node1',
      labels: { 'kubernetes.io/hostname': 'node1', [ZONE_LABEL]: 'z' },
      zone: 'z',
      podCIDRs: ['fd00:10:244:1::/64'],
      addresses: ['fd00::1'],
      eligible: true,
    });
  });
});

describe('proxyConfig()', () => {
  it('deep-merges overrides over core defaults without touching the rest', () => {
    const cfg = proxyConfig({ iptables: { masqueradeAll: true }, nodePortAddresses: ['primary'] });
    const defaults = defaultProxyConfig();
    expect(cfg.iptables).toEqual({ ...defaults.iptables, masqueradeAll: true });
    expect(cfg.nodePortAddresses).toEqual(['primary']);
    expect(cfg.ipvs).toEqual(defaults.ipvs);
    expect(proxyConfig()).toEqual(defaults);
  });

  it('deepMerge replaces arrays and skips undefined', () => {
    expect(deepMerge({ a: [1, 2], b: { c: 1, d: 2 } }, { a: [3], b: { c: undefined, d: 5 } })).toEqual({ a: [3], b: { c: 1, d: 5 } });
  });
});

describe('builders as core reads them', () => {
  it('a built Service converts into upstream-shaped service ports without problems', async () => {
    const { serviceToServicePorts } = await import('@kube-proxy-ts/core');
    const svc = service('ns1', 'svc1', {
      type: 'LoadBalancer',
      clusterIP: '172.30.0.41',
      ports: [{ name: 'p80', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }],
      externalIPs: ['192.168.99.11'],
      loadBalancerIngress: ['5.6.7.8'],
      sessionAffinity: 'ClientIP',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32000,
    });
    const r = serviceToServicePorts(svc, 'IPv4');
    expect(r.problems).toEqual([]);
    expect(r.skipped).toBeUndefined();
    expect(r.ports.map((p) => p.key)).toEqual(['ns1/svc1:p80/TCP', 'ns1/svc1:dns/UDP']);
    expect(r.ports[0]).toMatchObject({
      type: 'LoadBalancer',
      clusterIP: '172.30.0.41',
      externalIPs: ['192.168.99.11'],
      loadBalancerVIPs: ['5.6.7.8'],
      sessionAffinity: { type: 'ClientIP', timeoutSeconds: 10800 },
      externalPolicyLocal: true,
      healthCheckNodePort: 32000,
    });
    expect(r.ports[0]!.nodePort).toBeGreaterThanOrEqual(30000);
    expect(serviceToServicePorts(service('ns1', 'db', { clusterIP: 'None' }), 'IPv4').skipped).toBeDefined();
  });

  it('a built EndpointSlice and Node convert with their conditions, hints and locality', async () => {
    const { endpointSliceToEndpoints, nodeToNodeInfo } = await import('@kube-proxy-ts/core');
    const slice = endpointSlice('ns1', 'svc1', {
      endpoints: [{ ip: '10.180.0.1', nodeName: 'node1', zone: 'zone-a', zoneHints: ['zone-a'] }, { ip: '10.180.0.2', ready: false, serving: true, terminating: true, nodeName: 'node2' }],
    });
    const r = endpointSliceToEndpoints(slice, 'IPv4', { nodeName: 'node1' });
    expect(r.problems).toEqual([]);
    expect(r.ports).toHaveLength(1);
    expect(r.ports[0]!.key).toBe('ns1/svc1:p80/TCP');
    expect(r.ports[0]!.endpoints.map((e) => [e.hostPort, e.ready, e.serving, e.terminating, e.isLocal, e.zoneHints])).toEqual([
      ['10.180.0.1:80', true, true, false, true, ['zone-a']],
      ['10.180.0.2:80', false, true, true, false, undefined],
    ]);
    const info = nodeToNodeInfo(node('node1', { zone: 'zone-a', podCIDRs: ['10.244.1.0/24'], addresses: ['192.168.50.1'] }), 'IPv4');
    expect(info).toEqual(nodeInfo({ zone: 'zone-a', podCIDRs: ['10.244.1.0/24'], addresses: ['192.168.50.1'] }));
  });
});
