import { describe, expect, it } from 'vitest';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { endpointSliceToEndpoints, nodeEligible, nodeToNodeInfo, serviceToServicePorts } from '@kube-proxy-ts/core';
import { toTyped } from './typed.js';

const BULK = {
  uid: '00000000-0000-4000-8000-000000000001',
  creationTimestamp: '2024-01-01T00:00:00Z',
  managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': {} } }],
};

const SERVICE = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {
    name: 'web',
    namespace: 'demo',
    resourceVersion: '42',
    labels: { app: 'web' },
    annotations: { 'service.kubernetes.io/topology-mode': 'Auto', 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(4000) },
    ...BULK,
  },
  spec: {
    type: 'LoadBalancer',
    clusterIP: '10.96.0.10',
    clusterIPs: ['10.96.0.10', 'fd00::10'],
    ipFamilies: ['IPv4', 'IPv6'],
    ipFamilyPolicy: 'RequireDualStack',
    selector: { app: 'web' },
    ports: [{ name: 'http', port: 80, targetPort: 'http-alt', nodePort: 30080, protocol: 'TCP', appProtocol: 'http' }],
    externalIPs: ['192.0.2.1'],
    loadBalancerSourceRanges: ['198.51.100.0/24'],
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
    externalTrafficPolicy: 'Local',
    internalTrafficPolicy: 'Local',
    healthCheckNodePort: 32000,
    trafficDistribution: 'PreferClose',
  },
  status: { loadBalancer: { ingress: [{ ip: '203.0.113.5', ipMode: 'VIP', ports: [{ port: 80, protocol: 'TCP' }] }] }, conditions: [] },
};

const SLICE = {
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: 'web-abcde',
    namespace: 'demo',
    resourceVersion: '43',
    labels: { 'kubernetes.io/service-name': 'web' },
    annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-01T00:00:01Z', other: 'y' },
    ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'u' }],
    ...BULK,
  },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }],
  endpoints: [
    {
      addresses: ['10.244.1.5'],
      conditions: { ready: false, serving: true, terminating: true },
      nodeName: 'node-a',
      zone: 'z1',
      hints: { forZones: [{ name: 'z1' }], forNodes: [{ name: 'node-a' }] },
      targetRef: { kind: 'Pod', name: 'web-0', namespace: 'demo', uid: 'p' },
      hostname: 'web-0',
    },
  ],
};

describe('toTyped', () => {
  it('keeps of a Service and an EndpointSlice only what a proxy reads, and converts to the same records as the full object', () => {
    const svc = toTyped('Service', SERVICE);
    const full = SERVICE as unknown as V1Service;
    for (const family of ['IPv4', 'IPv6'] as const) expect(serviceToServicePorts(svc, family)).toEqual(serviceToServicePorts(full, family));
    expect(svc.metadata).toEqual({
      name: 'web',
      namespace: 'demo',
      resourceVersion: '42',
      labels: { app: 'web' },
      annotations: { 'service.kubernetes.io/topology-mode': 'Auto' },
    });
    expect(JSON.stringify(svc).length).toBeLessThan(1000);

    const slice = toTyped('EndpointSlice', SLICE);
    const fullSlice = SLICE as unknown as V1EndpointSlice;
    const opts = { nodeName: 'node-a' };
    expect(endpointSliceToEndpoints(slice, 'IPv4', opts)).toEqual(endpointSliceToEndpoints(fullSlice, 'IPv4', opts));
    expect(slice.metadata?.annotations).toEqual({ 'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-01T00:00:01Z' });
    expect(slice.metadata).not.toHaveProperty('managedFields');
    expect(slice.endpoints[0]).not.toHaveProperty('targetRef');
  });

  it('keeps of a Node its name, labels, deletion, pod CIDRs and addresses, and of a ServiceCIDR its CIDRs', () => {
    const node = toTyped('Node', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n1', resourceVersion: '9', labels: { 'topology.kubernetes.io/zone': 'z1' }, deletionTimestamp: '2026-12-03T07:00:00Z', managedFields: [{ manager: 'kubelet' }] },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], providerID: 'x' },
      status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }], conditions: [{ type: 'Ready', status: 'True' }], images: [{ names: ['a'] }] },
    });
    expect(node).toEqual({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n1', resourceVersion: '9', labels: { 'topology.kubernetes.io/zone': 'z1' }, deletionTimestamp: '2026-12-03T07:00:00Z' },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] },
      status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] },
    });
    // What core reads of it.
    expect(nodeToNodeInfo(node, 'IPv4')).toMatchObject({ name: 'n1', addresses: ['10.0.0.1'], podCIDRs: ['10.244.1.0/24'] });
    expect(nodeEligible(node)).toBe(false);
    expect(toTyped('ServiceCIDR', { metadata: { name: 'kubernetes', resourceVersion: '3', uid: 'u' }, spec: { cidrs: ['10.96.0.0/16'] }, status: { conditions: [] } })).toEqual({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'ServiceCIDR',
      metadata: { name: 'kubernetes', resourceVersion: '3' },
      spec: { cidrs: ['10.96.0.0/16'] },
    });
    expect(() => toTyped('Node', [])).toThrow('a Node must be an object');
  });

  it('refuses what is not an object with a clear error', () => {
    expect(() => toTyped('Service', 'web')).toThrow('a Service must be an object');
    expect(() => toTyped('EndpointSlice', null)).toThrow('an EndpointSlice must be an object');
  });
});
