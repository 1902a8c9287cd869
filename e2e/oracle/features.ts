// The Services and EndpointSlices both daemons are given: one or more per feature of the
// proxy, with endpoints on this node (node1, the sandbox's pod addresses) and on another.

import type { CoreV1Api, DiscoveryV1Api, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { endpointSlice, node, PLAN, service, type EndpointInput, type EndpointPortInput } from '@kube-proxy-ts/testing';
import { NODE_NAME } from './pair.js';

export const NS = 'oracle';
const REMOTE = 'node2';

const local = (i: number, extra: Partial<Exclude<EndpointInput, string>> = {}): EndpointInput => ({ ip: `10.244.1.${10 + i}`, nodeName: NODE_NAME, ...extra });
const remote = (i: number, extra: Partial<Exclude<EndpointInput, string>> = {}): EndpointInput => ({ ip: `10.244.2.${10 + i}`, nodeName: REMOTE, ...extra });
const local6 = (i: number): EndpointInput => ({ ip: `fd00:10:244:1::${10 + i}`, nodeName: NODE_NAME });
const remote6 = (i: number): EndpointInput => ({ ip: `fd00:10:244:2::${10 + i}`, nodeName: REMOTE });

/** As a client sends objects to create: the builders' uid is the server's to assign. */
function forCreate<T extends { metadata?: { uid?: string; resourceVersion?: string } }>(obj: T): T {
  delete obj.metadata?.uid;
  delete obj.metadata?.resourceVersion;
  return obj;
}

const http = [{ name: 'http', port: 80, targetPort: 8080 }];
const httpEp: EndpointPortInput[] = [{ name: 'http', port: 8080 }];

export interface Feature {
  service: V1Service;
  slices: V1EndpointSlice[];
}

/** One entry per feature of the list; `ipv6` adds the dual-stack and IPv6-only ones. */
export function features(ipv6: boolean): Feature[] {
  const f = (svc: V1Service, ...slices: V1EndpointSlice[]): Feature => ({ service: svc, slices });
  const slice = (svc: string, endpoints: EndpointInput[], ports = httpEp, name = `${svc}-1`) => endpointSlice(NS, svc, { name, endpoints, ports });
  const list: Feature[] = [
    f(service(NS, 'clusterip', { clusterIP: '10.96.1.1', ports: http }), slice('clusterip', [local(1), local(2), remote(1)])),
    f(
      service(NS, 'nodeport', { type: 'NodePort', clusterIP: '10.96.1.2', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }),
      slice('nodeport', [local(1), remote(2)]),
    ),
    f(
      service(NS, 'lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.1.3',
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30081 }],
        // The second range holds the node's address: upstream then also lets the LB IP itself in.
        loadBalancerSourceRanges: ['203.0.113.0/24', '192.168.50.0/24'],
        loadBalancerIngress: ['198.51.100.10'],
      }),
      slice('lb', [local(2), remote(3)]),
    ),
    f(service(NS, 'lb-open', { type: 'LoadBalancer', clusterIP: '10.96.1.4', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30082 }], loadBalancerIngress: ['198.51.100.11'] }), slice('lb-open', [local(3)])),
    f(service(NS, 'external-ips', { clusterIP: '10.96.1.5', externalIPs: ['192.0.2.10'], ports: http }), slice('external-ips', [local(1), remote(1)])),
    f(
      service(NS, 'affinity', { clusterIP: '10.96.1.6', ports: http, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
      slice('affinity', [local(1), local(2), local(3)]),
    ),
    f(
      service(NS, 'etp-local', {
        type: 'LoadBalancer',
        clusterIP: '10.96.1.7',
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: 32100,
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30083 }],
        loadBalancerIngress: ['198.51.100.12'],
      }),
      slice('etp-local', [local(1), remote(1), remote(2)]),
    ),
    f(
      service(NS, 'etp-local-remote-only', {
        type: 'NodePort',
        clusterIP: '10.96.1.8',
        externalTrafficPolicy: 'Local',
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30084 }],
      }),
      slice('etp-local-remote-only', [remote(1)]),
    ),
    f(service(NS, 'itp-local', { clusterIP: '10.96.1.9', internalTrafficPolicy: 'Local', ports: http }), slice('itp-local', [local(2), remote(2)])),
    f(service(NS, 'itp-local-remote-only', { clusterIP: '10.96.1.10', internalTrafficPolicy: 'Local', ports: http }), slice('itp-local-remote-only', [remote(3)])),
    f(
      service(NS, 'terminating', { type: 'NodePort', clusterIP: '10.96.1.11', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30085 }] }),
      // No ready endpoint: serving, terminating ones are used instead.
      slice('terminating', [local(1, { ready: false, serving: true, terminating: true }), remote(1, { ready: false, serving: true, terminating: true }), remote(2, { ready: false, serving: false, terminating: true })]),
    ),
    f(service(NS, 'no-endpoints', { type: 'NodePort', clusterIP: '10.96.1.12', externalIPs: ['192.0.2.11'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30086 }] })),
    f(
      service(NS, 'multi-port', {
        type: 'NodePort',
        clusterIP: '10.96.1.13',
        ports: [
          { name: 'http', port: 80, targetPort: 8080, nodePort: 30087 },
          { name: 'https', port: 443, targetPort: 8443, nodePort: 30088 },
          { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30089 },
        ],
      }),
      slice('multi-port', [local(1), local(2), remote(1)], [{ name: 'http', port: 8080 }, { name: 'https', port: 8443 }, { name: 'dns', port: 5353, protocol: 'UDP' }]),
    ),
  ];
  if (ipv6) {
    list.push(
      f(
        service(NS, 'dual-stack', {
          type: 'NodePort',
          clusterIPs: ['10.96.1.20', 'fd00:10:96::20'],
          ipFamilyPolicy: 'RequireDualStack',
          ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30090 }],
        }),
        slice('dual-stack', [local(1), remote(1)], httpEp, 'dual-stack-v4'),
        slice('dual-stack', [local6(1), remote6(1)], httpEp, 'dual-stack-v6'),
      ),
      f(
        service(NS, 'ipv6-affinity', {
          clusterIP: 'fd00:10:96::21',
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } },
          ports: http,
        }),
        slice('ipv6-affinity', [local6(1), local6(2)]),
      ),
      f(
        service(NS, 'ipv6-etp-local', {
          type: 'NodePort',
          clusterIP: 'fd00:10:96::22',
          externalTrafficPolicy: 'Local',
          ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30091 }],
        }),
        slice('ipv6-etp-local', [local6(2), remote6(2)]),
      ),
      f(service(NS, 'ipv6-no-endpoints', { clusterIP: 'fd00:10:96::23', ports: http })),
    );
  }
  return list;
}

/** Writes the node, the namespace and every feature's objects (LB ingress through the status subresource). */
export async function writeFeatures(core: CoreV1Api, discovery: DiscoveryV1Api, ipv6: boolean): Promise<Feature[]> {
  const addresses = ipv6 ? [PLAN.nodeIP, PLAN.ipv6.nodeIP] : [PLAN.nodeIP];
  const podCIDRs = ipv6 ? [PLAN.podCIDR, PLAN.ipv6.podCIDR] : [PLAN.podCIDR];
  await core.createNode({ body: forCreate(node(NODE_NAME, { addresses, podCIDRs })) });
  await core.createNamespace({ body: { metadata: { name: NS } } });
  const list = features(ipv6);
  for (const { service: svc, slices } of list) {
    const status = svc.status;
    const created = await core.createNamespacedService({ namespace: NS, body: forCreate(structuredClone(svc)) });
    if (status?.loadBalancer?.ingress?.length) {
      created.status = status;
      await core.replaceNamespacedServiceStatus({ namespace: NS, name: svc.metadata!.name!, body: created });
    }
    for (const s of slices) await discovery.createNamespacedEndpointSlice({ namespace: NS, body: forCreate(structuredClone(s)) });
  }
  return list;
}

/** The endpoint change of the second round: scale `clusterip` and drop `lb-open`'s only endpoint. */
export async function changeFeatures(discovery: DiscoveryV1Api): Promise<void> {
  const slice = (svc: string, endpoints: EndpointInput[]) => forCreate(endpointSlice(NS, svc, { name: `${svc}-1`, endpoints, ports: httpEp }));
  await discovery.replaceNamespacedEndpointSlice({ namespace: NS, name: 'clusterip-1', body: slice('clusterip', [local(1), remote(1), remote(2), remote(3)]) });
  await discovery.replaceNamespacedEndpointSlice({ namespace: NS, name: 'lb-open-1', body: slice('lb-open', []) });
}
