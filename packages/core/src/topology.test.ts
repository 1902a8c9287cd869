// Cases ported from upstream's TestCategorizeEndpoints (pkg/proxy/topology_test.go), in their
// current form: topology comes from the hints alone (the EndpointSlice controller only writes
// them for topology-mode Auto or a trafficDistribution), and serving-terminating fallback is on.

import { describe, expect, it } from 'vitest';
import type { Endpoint, ServicePort } from './model.js';
import { servicePortRecord } from './fixtures.js';
import { ep, nodeInfo } from './builders.test-support.js';
import { categorizeEndpoints, topologyModeFromHints, type CategorizeOptions } from './topology.js';

interface Case {
  name: string;
  zone?: string;
  nodeName?: string;
  svc?: Partial<ServicePort>;
  opts?: CategorizeOptions;
  endpoints: Endpoint[];
  cluster: string[];
  local: string[];
  all: string[];
  hasAny: boolean;
}

const ZA = { zone: 'zone-a' };
const extLocal = { externalPolicyLocal: true, nodePort: 8080 };
/** Four endpoints hinted for zones a, b, c, a; the first `localCount` are on this node. */
const fourHinted = (fourthReady = true, localCount = 0) =>
  [
    ep('10.1.2.3:80', { zoneHints: ['zone-a'] }),
    ep('10.1.2.4:80', { zoneHints: ['zone-b'] }),
    ep('10.1.2.5:80', { zoneHints: ['zone-c'] }),
    ep('10.1.2.6:80', { zoneHints: ['zone-a'], ready: fourthReady, serving: fourthReady }),
  ].map((e, i) => (i < localCount ? { ...e, isLocal: true } : e));
/** Endpoints in zones a, a, b with node hints for `firstNode`, node-b and node-c. */
const nodeHinted = (firstNode: string) => [
  ep('10.0.0.1:80', { nodeHints: [firstNode], zoneHints: ['zone-a'] }),
  ep('10.0.0.2:80', { nodeHints: ['node-b'], zoneHints: ['zone-a'] }),
  ep('10.0.0.3:80', { nodeHints: ['node-c'], zoneHints: ['zone-b'] }),
];
const all4 = ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.5:80', '10.1.2.6:80'];

const cases: Case[] = [
  { name: 'zone hints, node in zone-a', ...ZA, endpoints: fourHinted(), cluster: ['10.1.2.3:80', '10.1.2.6:80'], local: [], all: ['10.1.2.3:80', '10.1.2.6:80'], hasAny: true },
  ...[
    { policy: 'externalTrafficPolicy Local', svc: extLocal },
    { policy: 'internalTrafficPolicy Local with a node port', svc: { internalPolicyLocal: true, nodePort: 8080 } },
  ].map(({ policy, svc }): Case => ({
    name: `${policy}: topology ignored for local endpoints`,
    ...ZA,
    svc,
    endpoints: fourHinted(true, 2),
    cluster: ['10.1.2.3:80', '10.1.2.6:80'],
    local: ['10.1.2.3:80', '10.1.2.4:80'],
    all: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
    hasAny: true,
  })),
  { name: 'node without zone label: hints ignored', endpoints: [ep('10.1.2.3:80', { zoneHints: ['zone-a'] })], cluster: ['10.1.2.3:80'], local: [], all: ['10.1.2.3:80'], hasAny: true },
  { name: 'node in a zone no endpoint is hinted for: no filtering', zone: 'zone-b', endpoints: [ep('10.1.2.3:80', { zoneHints: ['zone-a'] })], cluster: ['10.1.2.3:80'], local: [], all: ['10.1.2.3:80'], hasAny: true },
  { name: 'an unready endpoint is filtered out with the hints', ...ZA, endpoints: fourHinted(false), cluster: ['10.1.2.3:80'], local: [], all: ['10.1.2.3:80'], hasAny: true },
  {
    name: 'only unready endpoints in the same zone: no filtering',
    ...ZA,
    endpoints: [
      ep('10.1.2.3:80', { zoneHints: ['zone-a'], ready: false, serving: false }),
      ep('10.1.2.4:80', { zoneHints: ['zone-b'] }),
      ep('10.1.2.5:80', { zoneHints: ['zone-c'] }),
      ep('10.1.2.6:80', { zoneHints: ['zone-a'], ready: false, serving: false }),
    ],
    cluster: ['10.1.2.4:80', '10.1.2.5:80'],
    local: [],
    all: ['10.1.2.4:80', '10.1.2.5:80'],
    hasAny: true,
  },
  {
    name: 'a ready endpoint without hints: no filtering',
    ...ZA,
    endpoints: [
      ep('10.1.2.3:80', { zoneHints: ['zone-a'] }),
      ep('10.1.2.4:80', { zoneHints: ['zone-b'] }),
      ep('10.1.2.5:80'),
      ep('10.1.2.6:80', { zoneHints: ['zone-a'] }),
    ],
    cluster: all4,
    local: [],
    all: all4,
    hasAny: true,
  },
  {
    name: 'several hints per endpoint: any endpoint hinted for the zone',
    zone: 'zone-c',
    endpoints: [
      ep('10.1.2.3:80', { zoneHints: ['zone-a', 'zone-b', 'zone-c'] }),
      ep('10.1.2.4:80', { zoneHints: ['zone-b', 'zone-c'] }),
      ep('10.1.2.5:80', { zoneHints: ['zone-b', 'zone-d'] }),
      ep('10.1.2.6:80', { zoneHints: ['zone-c'] }),
    ],
    cluster: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
    local: [],
    all: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
    hasAny: true,
  },
  {
    name: 'conflicting topology and localness: allReachable is the union',
    ...ZA,
    svc: extLocal,
    endpoints: [
      ep('10.0.0.0:80', { zoneHints: ['zone-a'], isLocal: true }),
      ep('10.0.0.1:80', { zoneHints: ['zone-b'], isLocal: true }),
      ep('10.0.0.2:80', { zoneHints: ['zone-a'] }),
      ep('10.0.0.3:80', { zoneHints: ['zone-b'] }),
    ],
    cluster: ['10.0.0.0:80', '10.0.0.2:80'],
    local: ['10.0.0.0:80', '10.0.0.1:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80', '10.0.0.2:80'],
    hasAny: true,
  },
  {
    name: 'node hints: every ready endpoint hinted, one for this node (PreferSameNode)',
    ...ZA,
    endpoints: nodeHinted('node-a'),
    cluster: ['10.0.0.1:80'],
    local: [],
    all: ['10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'node hints with none for this node: fall back to zone hints',
    ...ZA,
    endpoints: nodeHinted('node-x'),
    cluster: ['10.0.0.1:80', '10.0.0.2:80'],
    local: [],
    all: ['10.0.0.1:80', '10.0.0.2:80'],
    hasAny: true,
  },
  {
    name: 'node hints missing on one ready endpoint: zone hints used',
    ...ZA,
    endpoints: [
      ep('10.0.0.1:80', { nodeHints: ['node-a'], zoneHints: ['zone-a'] }),
      ep('10.0.0.2:80', { zoneHints: ['zone-a'] }),
      ep('10.0.0.3:80', { nodeHints: ['node-c'], zoneHints: ['zone-b'] }),
    ],
    cluster: ['10.0.0.1:80', '10.0.0.2:80'],
    local: [],
    all: ['10.0.0.1:80', '10.0.0.2:80'],
    hasAny: true,
  },
  {
    name: 'node hints ignored when same-node distribution is off',
    ...ZA,
    opts: { nodeHints: false },
    endpoints: nodeHinted('node-a'),
    cluster: ['10.0.0.1:80', '10.0.0.2:80'],
    local: [],
    all: ['10.0.0.1:80', '10.0.0.2:80'],
    hasAny: true,
  },
  { name: 'internalTrafficPolicy Local, no endpoints', svc: { internalPolicyLocal: true }, endpoints: [], cluster: [], local: [], all: [], hasAny: false },
  {
    name: 'internalTrafficPolicy Local, all endpoints remote',
    svc: { internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80'), ep('10.0.0.1:80')],
    cluster: [],
    local: [],
    all: [],
    hasAny: true,
  },
  {
    name: 'internalTrafficPolicy Local, all endpoints local',
    svc: { internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80', { isLocal: true }), ep('10.0.0.1:80', { isLocal: true })],
    cluster: [],
    local: ['10.0.0.0:80', '10.0.0.1:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'internalTrafficPolicy Local, some endpoints local',
    svc: { internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80', { isLocal: true }), ep('10.0.0.1:80')],
    cluster: [],
    local: ['10.0.0.0:80'],
    all: ['10.0.0.0:80'],
    hasAny: true,
  },
  {
    name: 'Cluster policy, no endpoint ready',
    endpoints: [ep('10.0.0.0:80', { ready: false, serving: false }), ep('10.0.0.1:80', { ready: false, serving: false })],
    cluster: [],
    local: [],
    all: [],
    hasAny: false,
  },
  {
    name: 'Cluster policy, some endpoints ready',
    endpoints: [ep('10.0.0.0:80', { ready: false, serving: false }), ep('10.0.0.1:80')],
    cluster: ['10.0.0.1:80'],
    local: [],
    all: ['10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'Cluster policy, all endpoints terminating but serving: they are used',
    endpoints: [
      ep('10.0.0.0:80', { ready: false, serving: true, terminating: true, isLocal: true }),
      ep('10.0.0.1:80', { ready: false, serving: true, terminating: true }),
    ],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: [],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'Cluster policy, terminating endpoints that no longer serve are never used',
    endpoints: [ep('10.0.0.0:80', { ready: false, serving: false, terminating: true })],
    cluster: [],
    local: [],
    all: [],
    hasAny: false,
  },
  {
    name: 'Cluster policy, ready endpoints win over serving-terminating ones',
    endpoints: [ep('10.0.0.0:80', { ready: false, serving: true, terminating: true }), ep('10.0.0.1:80')],
    cluster: ['10.0.0.1:80'],
    local: [],
    all: ['10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Local, eTP Cluster, some endpoints local',
    svc: { internalPolicyLocal: true, nodePort: 8080 },
    endpoints: [ep('10.0.0.0:80', { isLocal: true }), ep('10.0.0.1:80')],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: ['10.0.0.0:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Cluster, eTP Local, some endpoints local',
    svc: extLocal,
    endpoints: [ep('10.0.0.0:80', { isLocal: true }), ep('10.0.0.1:80')],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: ['10.0.0.0:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Local, eTP Local, some endpoints local',
    svc: { ...extLocal, internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80', { isLocal: true }), ep('10.0.0.1:80')],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: ['10.0.0.0:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Local, eTP Local, all endpoints remote',
    svc: { ...extLocal, internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80'), ep('10.0.0.1:80')],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: [],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Local, eTP Local, all endpoints remote and serving-terminating',
    svc: { ...extLocal, internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80', { ready: false, serving: true, terminating: true }), ep('10.0.0.1:80', { ready: false, serving: true, terminating: true })],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: [],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'iTP Cluster, eTP Local, local endpoint only serving-terminating: local falls back to it',
    svc: extLocal,
    endpoints: [
      ep('10.0.0.0:80'),
      ep('10.0.0.1:80', { ready: false, serving: false, isLocal: true }),
      ep('10.0.0.2:80', { ready: false, serving: true, terminating: true, isLocal: true }),
      ep('10.0.0.3:80', { ready: false, serving: true, terminating: true }),
    ],
    cluster: ['10.0.0.0:80'],
    local: ['10.0.0.2:80'],
    all: ['10.0.0.0:80', '10.0.0.2:80'],
    hasAny: true,
  },
  {
    name: 'externalTrafficPolicy Local ignored when not externally accessible',
    svc: { externalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80'), ep('10.0.0.1:80', { isLocal: true })],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: [],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'no cluster endpoints for an internal-only iTP Local service',
    svc: { internalPolicyLocal: true },
    endpoints: [ep('10.0.0.0:80'), ep('10.0.0.1:80', { isLocal: true })],
    cluster: [],
    local: ['10.0.0.1:80'],
    all: ['10.0.0.1:80'],
    hasAny: true,
  },
  {
    name: 'eTP Local through an external IP only',
    svc: { externalPolicyLocal: true, externalIPs: ['192.0.2.10'] },
    endpoints: [ep('10.0.0.0:80'), ep('10.0.0.1:80', { isLocal: true })],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'],
    local: ['10.0.0.1:80'],
    all: ['10.0.0.0:80', '10.0.0.1:80'],
    hasAny: true,
  },
];

const hostPorts = (list: readonly Endpoint[]) => list.map((e) => e.hostPort).sort();

describe('categorizeEndpoints (upstream TestCategorizeEndpoints)', () => {
  it.each(cases)('$name', (c) => {
    const node = nodeInfo({ name: c.nodeName ?? 'node-a', zone: c.zone });
    const got = categorizeEndpoints(servicePortRecord(c.svc), c.endpoints, node, c.opts);
    expect(hostPorts(got.clusterEndpoints)).toEqual([...c.cluster].sort());
    expect(hostPorts(got.localEndpoints)).toEqual([...c.local].sort());
    expect(hostPorts(got.allReachableEndpoints)).toEqual([...c.all].sort());
    expect(got.hasAnyEndpoints).toBe(c.hasAny);
  });

  it('returns allReachableEndpoints sorted like the endpoints map', () => {
    const got = categorizeEndpoints(
      servicePortRecord(extLocal),
      [ep('10.0.0.10:80', { zoneHints: ['zone-b'], isLocal: true }), ep('10.0.0.2:80', { zoneHints: ['zone-a'] })],
      nodeInfo({ zone: 'zone-a' }),
    );
    expect(got.allReachableEndpoints.map((e) => e.hostPort)).toEqual(['10.0.0.10:80', '10.0.0.2:80']);
  });
});

describe('topologyModeFromHints', () => {
  it('is empty without ready endpoints', () => {
    expect(topologyModeFromHints([ep('10.0.0.1:80', { ready: false, zoneHints: ['zone-a'] })], { name: 'n', zone: 'zone-a' })).toBe('');
  });
  it('prefers the node over the zone', () => {
    expect(topologyModeFromHints([ep('10.0.0.1:80', { nodeHints: ['n'], zoneHints: ['zone-a'] })], { name: 'n', zone: 'zone-a' })).toBe('PreferSameNode');
  });
});
