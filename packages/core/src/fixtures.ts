// Record builders for tests and benches: the model's records (ServicePort, Endpoint, ChangeSet)
// with neutral defaults, for code that skips the API-object conversion. Published as the
// `@kube-proxy-ts/core/fixtures` entry so the production entry carries none of it.

import type { ChangeSet } from './contract.js';
import type { Endpoint, ServicePort } from './model.js';
import { emptyChangeSet } from './change-set.js';
import { joinHostPort } from './ip.js';
import { servicePortKey } from './service-port.js';

/** A ServicePort with neutral defaults (ClusterIP only, Cluster policies); `key` follows `name`. */
export function servicePortRecord(overrides: Partial<ServicePort> = {}): ServicePort {
  const name = overrides.name ?? { namespace: 'ns', name: 'svc', port: 'p80', protocol: overrides.protocol ?? 'TCP' };
  return {
    key: servicePortKey(name),
    name,
    type: 'ClusterIP',
    clusterIP: '172.30.0.1',
    port: 80,
    protocol: name.protocol,
    nodePort: 0,
    targetPort: 80,
    externalIPs: [],
    loadBalancerVIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinity: { type: 'None' },
    externalPolicyLocal: false,
    internalPolicyLocal: false,
    healthCheckNodePort: 0,
    trafficDistribution: undefined,
    topologyMode: undefined,
    ...overrides,
  };
}

/** A ready, serving, remote Endpoint at ip:port; `serving` defaults to `ready`. */
export function endpointRecord(ip: string, port: number, overrides: Partial<Omit<Endpoint, 'ip' | 'port' | 'hostPort'>> = {}): Endpoint {
  return {
    ip,
    port,
    hostPort: joinHostPort(ip, port),
    ready: true,
    serving: overrides.ready ?? true,
    terminating: false,
    nodeName: undefined,
    zone: undefined,
    zoneHints: undefined,
    nodeHints: undefined,
    isLocal: false,
    ...overrides,
  };
}

/** An empty ChangeSet with the given parts filled in. */
export function changeSetRecord(overrides: Partial<ChangeSet> = {}): ChangeSet {
  return { ...emptyChangeSet(), ...overrides };
}
