import { defaultProxyConfig, servicePortKey, type Endpoint, type ServicePort } from '@kube-proxy-ts/core';
import { IptablesBackend } from '@kube-proxy-ts/backend-iptables';
import { testContext } from '@kube-proxy-ts/testing';
const n = 10000;
const services = new Map(); const endpoints = new Map();
const ep = (ip: string) => ({ ip, port: 80, hostPort: `${ip}:80`, ready: true, serving: true, terminating: false, nodeName: 'o', zone: undefined, zoneHints: undefined, nodeHints: undefined, isLocal: false }) as Endpoint;
for (let i = 0; i < n; i++) {
  const name = { namespace: 'ns', name: `svc${i}`, port: 'http', protocol: 'TCP' as const };
  const sp = { key: servicePortKey(name), name, type: 'ClusterIP', clusterIP: `172.16.${i >> 8}.${i & 255}`, port: 80, protocol: 'TCP', nodePort: 0, targetPort: 80, externalIPs: [], loadBalancerVIPs: [], loadBalancerSourceRanges: [], sessionAffinity: { type: 'None' }, externalPolicyLocal: false, internalPolicyLocal: false, healthCheckNodePort: 0, trafficDistribution: undefined, topologyMode: undefined } as ServicePort;
  services.set(sp.key, sp);
  endpoints.set(sp.key, Array.from({ length: 10 }, (_, e) => { const x = i * 10 + e; return ep(`10.${1 + (x >> 16)}.${(x >> 8) & 255}.${x & 255}`); }));
}
const node = { name: 'n', labels: {}, zone: undefined, podCIDRs: [], addresses: ['192.168.50.1'], eligible: true };
const clock = { now: () => performance.now(), setTimeout, clearTimeout } as never;
const ctx = testContext({ clock, node });
const config = defaultProxyConfig(); config.clusterCIDR = '10.0.0.0/8';
const b = new IptablesBackend({ ipFamily: 'IPv4', config, flavour: 'nft' });
await b.start(ctx);
const cs = (keys: string[]) => ({ servicePorts: new Set(keys), nodeChanged: false, deletedUDPClusterIPs: new Set<string>(), staleUDPEndpoints: [], newlyActiveUDPServices: new Set<string>(), lastChangeTriggerTimes: new Map() });
let t = performance.now();
const full = await b.sync({ ipFamily: 'IPv4', services, endpoints, node }, cs([...services.keys()]));
console.log('full', Math.round(performance.now() - t), JSON.stringify(full.stats));
for (let r = 0; r < 3; r++) {
  const key = [...services.keys()][500 + r]!;
  const list = [...endpoints.get(key)]; list[3] = ep(`10.250.0.${r + 1}`); endpoints.set(key, list);
  t = performance.now();
  const p = await b.sync({ ipFamily: 'IPv4', services, endpoints, node }, cs([key]));
  console.log('partial', Math.round(performance.now() - t), JSON.stringify(p.stats));
}
