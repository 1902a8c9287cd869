import { servicePortKey, type Endpoint, type ServicePort } from '@kube-proxy-ts/core';
import { computeRules } from '@kube-proxy-ts/backend-iptables';
const n = 1000;
const services = new Map(); const endpoints = new Map();
for (let i = 0; i < n; i++) {
  const name = { namespace: 'ns', name: `svc${i}`, port: 'http', protocol: 'TCP' as const };
  const sp = { key: servicePortKey(name), name, type: 'ClusterIP', clusterIP: `172.16.${i >> 8}.${i & 255}`, port: 80, protocol: 'TCP', nodePort: 0, targetPort: 80, externalIPs: [], loadBalancerVIPs: [], loadBalancerSourceRanges: [], sessionAffinity: { type: 'None' }, externalPolicyLocal: false, internalPolicyLocal: false, healthCheckNodePort: 0, trafficDistribution: undefined, topologyMode: undefined } as ServicePort;
  services.set(sp.key, sp);
  endpoints.set(sp.key, Array.from({ length: 10 }, (_, e) => { const x = i * 10 + e; const ip = `10.1.${x >> 8}.${x & 255}`; return { ip, port: 80, hostPort: `${ip}:80`, ready: true, serving: true, terminating: false, nodeName: 'o', zone: undefined, zoneHints: undefined, nodeHints: undefined, isLocal: false } as Endpoint; }));
}
const node = { name: 'n', labels: {}, zone: undefined, podCIDRs: [], addresses: ['192.168.50.1'], eligible: true };
const opts = { masqueradeAll: false, masqueradeBit: 14, localDetector: { kind: 'cidr', cidr: '10.0.0.0/8' }, localhostNodePorts: true, randomFully: true, conntrackTCPLiberal: false, nodePortsOnAllAddresses: true, nodePortIPs: [], nodeIP: '192.168.50.1' } as const;
for (let r = 0; r < 3; r++) { const t = performance.now(); computeRules({ ipFamily: 'IPv4', services, endpoints, node }, opts); console.log('compute', Math.round(performance.now() - t)); }
