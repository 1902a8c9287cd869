// EndpointSlice conversion and the per-Service slice cache. The table follows upstream's
// TestEndpointsMapFromESC / TestEndpointInfoByServicePort (pkg/proxy/endpointslicecache_test.go),
// built with the same generator, so slices named alike replace each other.

import type { V1EndpointSlice } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { endpointSliceToEndpoints, mergeEndpointSlices, parseTriggerTime } from './endpoint-slice.js';
import { EndpointsChangeTracker } from './endpoints-change-tracker.js';
import type { Endpoint } from './model.js';
import { slice } from './builders.test-support.js';

/** Upstream's generateEndpointSliceWithOffset: endpoint i is unready when i % unreadyMod == 0, terminating when i % terminatingMod == 0. */
function generate(service: string, ns: string, sliceNum: number, offset: number, count: number, unreadyMod: number, terminatingMod: number, hosts: string[], ports: (number | undefined)[]): V1EndpointSlice {
  const eps = [];
  for (let i = 1; i <= count; i++) {
    const readyCond = i % unreadyMod !== 0;
    const term = i % terminatingMod === 0;
    eps.push({ ip: `10.0.${offset}.${i}`, ready: readyCond && !term, serving: readyCond, terminating: term, nodeName: hosts.length > 0 ? hosts[i % hosts.length] : undefined });
  }
  return slice(ns, service, `${service}-${sliceNum}`, eps, ports.map((port, i) => ({ name: `port-${i}`, port, protocol: 'TCP' as const })));
}

type Row = [hostPort: string, isLocal: boolean, ready: boolean, serving: boolean, terminating: boolean];
const row = (e: Endpoint): Row => [e.hostPort, e.isLocal, e.ready, e.serving, e.terminating];
const R = (hostPort: string, o: Partial<{ local: boolean; ready: boolean; serving: boolean; terminating: boolean }> = {}): Row => [
  hostPort,
  o.local ?? false,
  o.ready ?? true,
  o.serving ?? o.ready ?? true,
  o.terminating ?? false,
];

function mergedFor(slices: V1EndpointSlice[], nodeName: string, service: string): Record<string, Row[]> {
  const tracker = new EndpointsChangeTracker({ ipFamily: 'IPv4', nodeName });
  for (const s of slices) tracker.update(s, false);
  const change = tracker.pendingChanges().find((c) => c.service === service);
  return Object.fromEntries([...(change?.current ?? new Map<string, readonly Endpoint[]>())].map(([k, v]) => [k, v.map(row)]));
}

const range = (offset: number, from: number, to: number, port: number, f: (i: number) => Partial<{ local: boolean; ready: boolean; serving: boolean; terminating: boolean }> = () => ({})) =>
  Array.from({ length: to - from + 1 }, (_, k) => from + k).map((i) => R(`10.0.${offset}.${i}:${port}`, f(i)));
const byString = (rows: Row[]) => [...rows].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

const cases: { name: string; host?: string; slices: V1EndpointSlice[]; expected: Record<string, Row[]> }[] = [
  {
    name: '1 slice, 2 hosts, ports 80,443',
    host: 'host1',
    slices: [generate('svc1', 'ns1', 1, 1, 3, 999, 999, ['host1', 'host2'], [80, 443])],
    expected: {
      'ns1/svc1:port-0/TCP': range(1, 1, 3, 80, (i) => ({ local: i === 2 })),
      'ns1/svc1:port-1/TCP': range(1, 1, 3, 443, (i) => ({ local: i === 2 })),
    },
  },
  {
    name: '2 slices, same port',
    slices: [generate('svc1', 'ns1', 1, 1, 3, 999, 999, [], [80]), generate('svc1', 'ns1', 2, 2, 3, 999, 999, [], [80])],
    expected: { 'ns1/svc1:port-0/TCP': [...range(1, 1, 3, 80), ...range(2, 1, 3, 80)] },
  },
  {
    name: 'a slice updated under the same name replaces its previous version',
    slices: [generate('svc1', 'ns1', 1, 1, 3, 999, 999, [], [80]), generate('svc1', 'ns1', 1, 1, 4, 999, 999, [], [80])],
    expected: { 'ns1/svc1:port-0/TCP': range(1, 1, 4, 80) },
  },
  {
    name: 'replacement with some endpoints unready',
    slices: [generate('svc1', 'ns1', 1, 1, 10, 3, 999, [], [80]), generate('svc1', 'ns1', 1, 1, 10, 6, 999, [], [80])],
    expected: { 'ns1/svc1:port-0/TCP': byString(range(1, 1, 10, 80, (i) => ({ ready: i !== 6, serving: i !== 6 }))) },
  },
  {
    name: 'replacement with some endpoints unready and some terminating',
    slices: [generate('svc1', 'ns1', 1, 1, 10, 3, 5, [], [80]), generate('svc1', 'ns1', 1, 1, 10, 6, 5, [], [80])],
    expected: {
      'ns1/svc1:port-0/TCP': byString(range(1, 1, 10, 80, (i) => (i === 6 ? { ready: false, serving: false } : i % 5 === 0 ? { ready: false, serving: true, terminating: true } : {}))),
    },
  },
  {
    name: 'all endpoints unready',
    slices: [generate('svc1', 'ns1', 1, 1, 10, 1, 999, [], [80]), generate('svc1', 'ns1', 1, 1, 10, 1, 999, [], [80])],
    expected: { 'ns1/svc1:port-0/TCP': byString(range(1, 1, 10, 80, () => ({ ready: false, serving: false }))) },
  },
  {
    name: '3 slices of different services and namespaces',
    slices: [generate('svc1', 'ns1', 1, 1, 3, 999, 999, [], [80]), generate('svc2', 'ns1', 2, 2, 3, 999, 999, [], [80]), generate('svc1', 'ns2', 3, 3, 3, 999, 999, [], [80])],
    expected: { 'ns1/svc1:port-0/TCP': range(1, 1, 3, 80) },
  },
  {
    name: 'a port without a number is ignored',
    host: 'host1',
    slices: [generate('svc1', 'ns1', 1, 1, 3, 999, 999, ['host1', 'host2'], [undefined])],
    expected: {},
  },
  {
    name: 'the same IPs on different ports of the same port name are all kept',
    host: 'host1',
    slices: [generate('svc1', 'ns1', 1, 1, 2, 999, 999, ['host1', 'host2'], [80]), generate('svc1', 'ns1', 2, 1, 2, 999, 999, ['host1', 'host2'], [8080])],
    expected: {
      'ns1/svc1:port-0/TCP': [R('10.0.1.1:80'), R('10.0.1.1:8080'), R('10.0.1.2:80', { local: true }), R('10.0.1.2:8080', { local: true })],
    },
  },
];

describe('EndpointSlice cache (upstream endpointslicecache cases)', () => {
  it.each(cases)('$name', (c) => {
    expect(mergedFor(c.slices, c.host ?? '', 'ns1/svc1')).toEqual(c.expected);
  });

  it('keeps the non-terminating record when one ip:port appears in two slices', () => {
    const a = slice('ns', 'svc', 'svc-a', [{ ip: '10.0.0.1', ready: true }]);
    const b = slice('ns', 'svc', 'svc-b', [{ ip: '10.0.0.1', ready: false, serving: true, terminating: true }]);
    for (const order of [[a, b], [b, a]]) {
      expect(mergedFor(order, '', 'ns/svc')).toEqual({ 'ns/svc:p80/TCP': [R('10.0.0.1:80')] });
    }
  });

  it('an endpoint moving between slices is not a change', () => {
    const t = new EndpointsChangeTracker({ ipFamily: 'IPv4', nodeName: '' });
    t.update(slice('ns', 'svc', 'svc-a', ['10.0.0.1', '10.0.0.2']), false);
    t.update(slice('ns', 'svc', 'svc-b', ['10.0.0.3']), false);
    t.checkout();
    expect(t.update(slice('ns', 'svc', 'svc-a', ['10.0.0.1']), false)).toBe(true);
    expect(t.update(slice('ns', 'svc', 'svc-b', ['10.0.0.2', '10.0.0.3']), false)).toBe(false);
    expect(t.pendingCount()).toBe(0);
  });
});

describe('slice changes (upstream TestEsDataChanged, judged on the merged result)', () => {
  const p80 = { name: 'http', port: 80, protocol: 'TCP' as const };
  const p443 = { name: 'https', port: 443, protocol: 'TCP' as const };
  const e1 = '10.0.1.0';
  const e2 = '10.0.1.1';
  const table: { name: string; before: V1EndpointSlice; after: V1EndpointSlice; changed: boolean }[] = [
    { name: 'identical slices, ports only', before: slice('bar', 'svc1', 'foo', [], [p80]), after: slice('bar', 'svc1', 'foo', [], [p80]), changed: false },
    // Upstream compares raw slices and calls reordering a change; the merged endpoints are equal, so no sync is needed.
    { name: 'identical with endpoints out of order', before: slice('bar', 'svc1', 'foo', [e1, e2], [p443]), after: slice('bar', 'svc1', 'foo', [e2, e1], [p443]), changed: false },
    { name: 'port removed', before: slice('bar', 'svc1', 'foo', [e1], [p443, p80]), after: slice('bar', 'svc1', 'foo', [e1], [p443]), changed: true },
    { name: 'port added', before: slice('bar', 'svc1', 'foo', [e1], [p443]), after: slice('bar', 'svc1', 'foo', [e1], [p443, p80]), changed: true },
    { name: 'identical with endpoints', before: slice('bar', 'svc1', 'foo', [e1, e2], [p443]), after: slice('bar', 'svc1', 'foo', [e1, e2], [p443]), changed: false },
    { name: 'endpoint added', before: slice('bar', 'svc1', 'foo', [e1], [p443]), after: slice('bar', 'svc1', 'foo', [e2, e1], [p443]), changed: true },
    { name: 'endpoint became not ready', before: slice('bar', 'svc1', 'foo', [e1], [p443]), after: slice('bar', 'svc1', 'foo', [{ ip: e1, ready: false }], [p443]), changed: true },
  ];
  it.each(table)('$name', (c) => {
    const t = new EndpointsChangeTracker({ ipFamily: 'IPv4', nodeName: '' });
    t.update(c.before, false);
    t.checkout();
    expect(t.update(c.after, false)).toBe(c.changed);
  });
});

describe('endpointSliceToEndpoints', () => {
  const opts = { nodeName: 'node-a' };

  it('defaults nil conditions: ready and serving true, terminating false', () => {
    const s = slice('ns', 'svc', 's1', ['10.0.0.1']);
    s.endpoints![0]!.conditions = undefined;
    const [e] = endpointSliceToEndpoints(s, 'IPv4', opts).ports[0]!.endpoints;
    expect([e!.ready, e!.serving, e!.terminating]).toEqual([true, true, false]);
  });

  it('marks endpoints on this node local and carries zone and hints', () => {
    const s = slice('ns', 'svc', 's1', [{ ip: '10.0.0.1', nodeName: 'node-a', zone: 'z1', zoneHints: ['z1'], nodeHints: ['node-a'] }, { ip: '10.0.0.2', nodeName: 'node-b' }]);
    const eps = endpointSliceToEndpoints(s, 'IPv4', opts).ports[0]!.endpoints;
    expect(eps.map((e) => [e.hostPort, e.isLocal, e.zone, e.zoneHints, e.nodeHints])).toEqual([
      ['10.0.0.1:80', true, 'z1', ['z1'], ['node-a']],
      ['10.0.0.2:80', false, undefined, undefined, undefined],
    ]);
  });

  it('skips slices of the other family and FQDN slices', () => {
    expect(endpointSliceToEndpoints(slice('ns', 'svc', 's', ['2001:db8::1'], undefined, { addressType: 'IPv6' }), 'IPv4', opts).skipped).toMatch(/IPv6 is not IPv4/);
    expect(endpointSliceToEndpoints(slice('ns', 'svc', 's', [], undefined, { addressType: 'FQDN' }), 'IPv6', opts).skipped).toMatch(/FQDN/);
  });

  it('formats IPv6 endpoints as [ip]:port in canonical form', () => {
    const s = slice('ns', 'svc', 's', ['2001:DB8:0:0::1'], undefined, { addressType: 'IPv6' });
    expect(endpointSliceToEndpoints(s, 'IPv6', opts).ports[0]!.endpoints[0]!.hostPort).toBe('[2001:db8::1]:80');
  });

  it('skips slices without a service label, of another proxy, or of a headless service', () => {
    const noLabel = slice('ns', 'svc', 's', ['10.0.0.1']);
    noLabel.metadata!.labels = {};
    expect(endpointSliceToEndpoints(noLabel, 'IPv4', opts).skipped).toMatch(/kubernetes.io\/service-name/);
    expect(endpointSliceToEndpoints(slice('ns', 'svc', 's', ['10.0.0.1'], undefined, { labels: { 'service.kubernetes.io/service-proxy-name': 'x' } }), 'IPv4', opts).skipped).toMatch(/another proxy/);
    expect(endpointSliceToEndpoints(slice('ns', 'svc', 's', ['10.0.0.1'], undefined, { labels: { 'service.kubernetes.io/headless': '' } }), 'IPv4', opts).skipped).toMatch(/headless/);
  });

  it('drops invalid addresses and ports with reasons, never throws', () => {
    const s = slice('ns', 'svc', 's', ['10.0.0.1', 'banana', '2001:db8::1', '10.0.0.256'], [{ name: 'a', port: 0 }, { name: 'b', port: 65536 }, { name: 'c', port: 8080 }]);
    const got = endpointSliceToEndpoints(s, 'IPv4', opts);
    expect(got.ports.map((p) => [p.key, p.endpoints.map((e) => e.hostPort)])).toEqual([['ns/svc:c/TCP', ['10.0.0.1:8080']]]);
    expect(got.problems).toHaveLength(5);
    const garbage = { metadata: { name: 'x', labels: { 'kubernetes.io/service-name': 'svc' } }, addressType: 'IPv4', endpoints: [null, { addresses: null }], ports: [null] } as unknown as V1EndpointSlice;
    expect(() => endpointSliceToEndpoints(garbage, 'IPv4', opts)).not.toThrow();
  });

  it('reads the last-change-trigger-time annotation', () => {
    const s = slice('ns', 'svc', 's', ['10.0.0.1'], undefined, { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-02T03:04:05Z' } });
    expect(endpointSliceToEndpoints(s, 'IPv4', opts).lastChangeTriggerTime).toBe(Date.UTC(2024, 0, 2, 3, 4, 5));
    expect(parseTriggerTime('yesterday')).toBeUndefined();
  });

  it('merges in slice-name order whatever the input order', () => {
    const a = endpointSliceToEndpoints(slice('ns', 'svc', 'a', [{ ip: '10.0.0.1', nodeName: 'n1' }]), 'IPv4', opts);
    const b = endpointSliceToEndpoints(slice('ns', 'svc', 'b', [{ ip: '10.0.0.1', nodeName: 'n2' }]), 'IPv4', opts);
    expect(mergeEndpointSlices([a, b])).toEqual(mergeEndpointSlices([b, a]));
    expect(mergeEndpointSlices([a, b]).get('ns/svc:p80/TCP')?.[0]?.nodeName).toBe('n2');
  });
});
