// The Services that `kube-proxy inspect` and `explain` are checked against on a real kernel: a
// ClusterIP with endpoints (one not ready), a NodePort, a Service without endpoints, a NodePort
// with externalTrafficPolicy Local (one endpoint here, one on another node), ClientIP affinity and
// a LoadBalancer with source ranges. The same objects produced the recorded kernel output the
// backends' kernel-view tests read (e2e/capture-inspect-samples.ts).

import { stringify } from 'yaml';
import type { Sandbox } from '@kube-proxy-ts/testing';

export const INSPECT_IPS = {
  web: '10.96.0.10',
  nodePort: '10.96.0.11',
  empty: '10.96.0.12',
  local: '10.96.0.13',
  affinity: '10.96.0.14',
  lb: '10.96.0.15',
  lbIngress: '203.0.113.10',
  /** An endpoint on another node: never reachable in the sandbox, selected only for cluster traffic. */
  remotePod: '10.244.2.5',
} as const;

export const INSPECT_NODE_PORTS = { nodePort: 30080, local: 30081 } as const;

interface Ep {
  ip: string;
  ready?: boolean;
  node?: string;
}

function service(name: string, spec: Record<string, unknown>, status?: Record<string, unknown>) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'e2e' }, spec, ...(status ? { status } : {}) };
}

function slice(name: string, eps: readonly Ep[]) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${name}-1`, namespace: 'e2e', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, nodeName: e.node ?? 'node1' })),
  };
}

const port = { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' };

/** The manifest file for the daemon's --manifests, on node "node1". */
export function inspectManifests(sb: Sandbox): string {
  const [pod1, pod2, pod3] = sb.pods.map((p) => p.ip);
  if (!pod1 || !pod2 || !pod3) throw new Error('the inspect world needs a sandbox with 3 pods');
  const docs = [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node1' }, spec: { podCIDRs: [sb.plan.podCIDR] }, status: { addresses: [{ type: 'InternalIP', address: sb.node.ip }] } },
    service('web', { type: 'ClusterIP', clusterIP: INSPECT_IPS.web, clusterIPs: [INSPECT_IPS.web], ports: [port] }),
    slice('web', [{ ip: pod1 }, { ip: pod2 }, { ip: pod3, ready: false }]),
    service('np', { type: 'NodePort', clusterIP: INSPECT_IPS.nodePort, clusterIPs: [INSPECT_IPS.nodePort], ports: [{ ...port, nodePort: INSPECT_NODE_PORTS.nodePort }] }),
    slice('np', [{ ip: pod3 }]),
    service('empty', { type: 'ClusterIP', clusterIP: INSPECT_IPS.empty, clusterIPs: [INSPECT_IPS.empty], ports: [port] }),
    service('local', {
      type: 'NodePort',
      clusterIP: INSPECT_IPS.local,
      clusterIPs: [INSPECT_IPS.local],
      externalTrafficPolicy: 'Local',
      ports: [{ ...port, nodePort: INSPECT_NODE_PORTS.local }],
    }),
    slice('local', [{ ip: pod1 }, { ip: INSPECT_IPS.remotePod, node: 'node2' }]),
    service('sticky', {
      type: 'ClusterIP',
      clusterIP: INSPECT_IPS.affinity,
      clusterIPs: [INSPECT_IPS.affinity],
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
      ports: [port],
    }),
    slice('sticky', [{ ip: pod1 }, { ip: pod2 }]),
    service(
      'lb',
      { type: 'LoadBalancer', clusterIP: INSPECT_IPS.lb, clusterIPs: [INSPECT_IPS.lb], loadBalancerSourceRanges: ['192.168.50.0/24'], ports: [{ ...port, nodePort: 30082 }] },
      { loadBalancer: { ingress: [{ ip: INSPECT_IPS.lbIngress }] } },
    ),
    slice('lb', [{ ip: pod2 }]),
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}
