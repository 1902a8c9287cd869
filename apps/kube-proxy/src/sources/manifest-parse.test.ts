import { describe, expect, it } from 'vitest';
import { parseManifest } from './manifest-parse.js';

const SERVICE = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  clusterIP: 10.96.0.10
  ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }]
`;

const SLICE = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: demo
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
endpoints:
  - addresses: [10.244.1.5]
    conditions: { ready: true }
ports: [{ name: http, port: 8080, protocol: TCP }]
`;

describe('parseManifest', () => {
  it('reads several documents into typed objects and ignores kinds a proxy does not use', () => {
    const m = parseManifest(`${SERVICE}---\n${SLICE}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: { name: x }\n---\n`);
    expect(m.problems).toEqual([]);
    expect(m.services.map((s) => s.metadata?.name)).toEqual(['web']);
    expect(m.services[0]?.spec?.ports?.[0]?.targetPort).toBe(8080);
    expect(m.endpointSlices[0]?.endpoints[0]?.addresses).toEqual(['10.244.1.5']);
    expect(m.endpointSlices[0]?.endpoints[0]?.conditions?.ready).toBe(true);
    expect(m.ignored).toEqual({ Deployment: 1 });
  });

  it('expands List and typed lists (whose items may omit kind), and reads JSON', () => {
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', namespace: 'ignored' } },
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } },
      ],
    });
    const typed = `apiVersion: v1\nkind: ServiceList\nitems:\n  - metadata: { name: b, namespace: x }\n    spec: { clusterIP: 10.96.0.2 }\n`;
    const m = parseManifest(`${list}\n---\n${typed}`);
    expect(m.problems).toEqual([]);
    expect(m.nodes.map((n) => [n.metadata?.name, n.metadata?.namespace])).toEqual([['n1', undefined]]);
    // A namespaced object without a namespace lands in "default", as kubectl would put it.
    expect(m.services.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`)).toEqual(['default/a', 'x/b']);
  });

  it('reports each bad document or item with its position and keeps the good ones', () => {
    const text = [
      SERVICE,
      'kind: Service\nmetadata: { name: [unclosed\n', // 2: invalid YAML
      'apiVersion: v1\nkind: Service\nmetadata: { namespace: demo }\n', // 3: no name
      'apiVersion: v1beta1\nkind: EndpointSlice\nmetadata: { name: s }\naddressType: IPv4\n', // 4: old API version
      'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: s2 }\n', // 5: no addressType
      '- just\n- a list\n', // 6: not an object
      'apiVersion: v1\nkind: List\nitems:\n  - { metadata: { name: nokind } }\n  - { apiVersion: v1, kind: Service, metadata: { name: ok2 } }\n', // 7: item 0 lacks kind
      'metadata: { name: nothing }\n', // 8: no kind
      'apiVersion: v1\nkind: Service\nmetadata: { name: bad-spec }\nspec: 42\n', // 9: spec not an object
    ].join('---\n');
    const m = parseManifest(text);
    expect(m.services.map((s) => s.metadata?.name)).toEqual(['web', 'ok2']);
    expect(m.endpointSlices).toEqual([]);
    expect(m.problems.map((p) => [p.document, p.item])).toEqual([
      [2, undefined],
      [3, undefined],
      [4, undefined],
      [5, undefined],
      [6, undefined],
      [7, 0],
      [8, undefined],
      [9, undefined],
    ]);
    expect(m.problems[0]?.message).toMatch(/^invalid YAML/);
    // Only the document that is not YAML reads as a file caught mid-edit; the others are bad objects.
    expect(m.problems.filter((p) => p.invalidYaml).map((p) => p.document)).toEqual([2]);
    expect(m.problems[1]?.message).toBe('Service without metadata.name');
    expect(m.problems[2]?.message).toContain('apiVersion "v1beta1" is not supported');
    expect(m.problems[3]?.message).toBe('EndpointSlice s2: missing addressType');
    expect(m.problems[4]?.message).toBe('expected an object, got an array');
    expect(m.problems[5]?.message).toBe('missing kind');
    expect(m.problems[7]?.message).toBe('Service bad-spec: spec must be an object');
  });

  it('reads cluster-scoped ServiceCIDRs and refuses ones without a list of CIDRs', () => {
    const text = [
      'apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: { name: kubernetes, namespace: ignored }\nspec: { cidrs: [10.96.0.0/16, "fd00:10:96::/112"] }\n',
      'apiVersion: networking.k8s.io/v1beta1\nkind: ServiceCIDR\nmetadata: { name: old }\nspec: { cidrs: [10.97.0.0/16] }\n',
      'apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: { name: no-cidrs }\nspec: {}\n',
      'apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: { name: numbers }\nspec: { cidrs: [42] }\n',
    ].join('---\n');
    const m = parseManifest(text);
    expect(m.serviceCIDRs.map((c) => [c.metadata?.name, c.metadata?.namespace, c.spec?.cidrs])).toEqual([['kubernetes', undefined, ['10.96.0.0/16', 'fd00:10:96::/112']]]);
    expect(m.problems.map((p) => p.message)).toEqual([
      'ServiceCIDR apiVersion "networking.k8s.io/v1beta1" is not supported (want networking.k8s.io/v1)',
      'ServiceCIDR no-cidrs: spec.cidrs must be a list of strings',
      'ServiceCIDR numbers: spec.cidrs must be a list of strings',
    ]);
  });

  it('treats an empty or comment-only file as no objects', () => {
    expect(parseManifest('')).toMatchObject({ services: [], endpointSlices: [], nodes: [], problems: [] });
    expect(parseManifest('# nothing yet\n---\n')).toMatchObject({ services: [], problems: [] });
  });

  it('reads again only the documents an edit touched, and numbers documents as the YAML parser does', () => {
    const services = Array.from({ length: 50 }, (_, i) => SERVICE.replace('name: web', `name: web${i}`));
    const first = parseManifest(`# header comment\n---\n${services.join('---\n')}---\n${SLICE}`);
    expect(first.services).toHaveLength(50);
    const edited = parseManifest(`# header comment\n---\n${services.join('---\n')}---\n${SLICE.replace('10.244.1.5', '10.244.1.6')}`, first);
    // Unchanged documents are handed back as the very objects read before; the edited one is new.
    expect(edited.services.every((svc, i) => svc === first.services[i])).toBe(true);
    expect(edited.endpointSlices[0]).not.toBe(first.endpointSlices[0]);
    expect(edited.endpointSlices[0]?.endpoints[0]?.addresses).toEqual(['10.244.1.6']);
    // A bad document keeps its number when documents before it are cached.
    const broken = parseManifest(`${services.slice(0, 3).join('---\n')}---\nkind: Service\nmetadata: { name: [unclosed\n---\n${SLICE}`, first);
    expect(broken.problems.map((p) => [p.document, p.invalidYaml])).toEqual([[4, true]]);
    expect(broken.endpointSlices).toHaveLength(1);
  });
});
