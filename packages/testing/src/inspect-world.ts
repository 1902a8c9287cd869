// The inspect world (e2e/inspect-world.ts) as the records a backend sees on node "node1": the
// service ports and endpoints behind the kernel output recorded for the kernel-view tests.

import { servicePortRecord, endpointRecord } from '@kube-proxy-ts/core/fixtures';
import type { Endpoint, ServicePort } from '@kube-proxy-ts/core';

const sp = (name: string, clusterIP: string, extra: Partial<ServicePort> = {}): ServicePort =>
  servicePortRecord({ name: { namespace: 'e2e', name, port: 'http', protocol: 'TCP' }, clusterIP, port: 80, targetPort: 8080, ...extra });
const local = (ip: string, extra: Partial<Endpoint> = {}) => endpointRecord(ip, 8080, { nodeName: 'node1', isLocal: true, ...extra });

export const INSPECT_WORLD_NODE_IP = '192.168.50.1';

/** Service ports by Service name, with their endpoints as the EndpointSlices give them. */
export function inspectWorld(): Record<string, { servicePort: ServicePort; endpoints: Endpoint[] }> {
  return {
    web: { servicePort: sp('web', '10.96.0.10'), endpoints: [local('10.244.1.11'), local('10.244.1.12'), local('10.244.1.13', { ready: false })] },
    np: { servicePort: sp('np', '10.96.0.11', { type: 'NodePort', nodePort: 30080 }), endpoints: [local('10.244.1.13')] },
    empty: { servicePort: sp('empty', '10.96.0.12'), endpoints: [] },
    local: {
      servicePort: sp('local', '10.96.0.13', { type: 'NodePort', nodePort: 30081, externalPolicyLocal: true }),
      endpoints: [local('10.244.1.11'), endpointRecord('10.244.2.5', 8080, { nodeName: 'node2' })],
    },
    sticky: { servicePort: sp('sticky', '10.96.0.14', { sessionAffinity: { type: 'ClientIP', timeoutSeconds: 60 } }), endpoints: [local('10.244.1.11'), local('10.244.1.12')] },
    lb: {
      servicePort: sp('lb', '10.96.0.15', { type: 'LoadBalancer', nodePort: 30082, loadBalancerVIPs: ['203.0.113.10'], loadBalancerSourceRanges: ['192.168.50.0/24'] }),
      endpoints: [local('10.244.1.12')],
    },
  };
}
