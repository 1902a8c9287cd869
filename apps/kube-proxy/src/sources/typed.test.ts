import { describe, expect, it } from 'vitest';
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { endpointSliceToEndpoints, serviceToServicePorts } from '@kube-proxy-ts/core';
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
    const full = ObjectSerializer.deserialize(SERVICE, 'V1Service', '') as V1Service;
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
    const fullSlice = ObjectSerializer.deserialize(SLICE, 'V1EndpointSlice', '') as V1EndpointSlice;
    const opts = { nodeName: 'node-a' };
    expect(endpointSliceToEndpoints(slice, 'IPv4', opts)).toEqual(endpointSliceToEndpoints(fullSlice, 'IPv4', opts));
    expect(slice.metadata?.annotations).toEqual({ 'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-01T00:00:01Z' });
    expect(slice.metadata).not.toHaveProperty('managedFields');
    expect(slice.endpoints[0]).not.toHaveProperty('targetRef');
  });

  it('gives list items (the client’s models) and watch events (plain JSON) one shape', () => {
    const fromList = toTyped('EndpointSlice', ObjectSerializer.deserialize(SLICE, 'V1EndpointSlice', ''));
    expect(fromList).toEqual(toTyped('EndpointSlice', JSON.parse(JSON.stringify(SLICE))));
  });

  it('refuses what is not an object with a clear error', () => {
    expect(() => toTyped('Service', 'web')).toThrow('a Service must be an object');
    expect(() => toTyped('EndpointSlice', null)).toThrow('an EndpointSlice must be an object');
  });
});
