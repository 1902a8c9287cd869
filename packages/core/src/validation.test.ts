// Name validation as the API server does it, and what the trackers do with objects that fail it:
// a name that would have put `-A KUBE-SERVICES -j X` or `flush ruleset` into a payload is refused
// with one warning, and the objects beside it are still served.

import { describe, expect, it } from 'vitest';
import type { Logger } from './contract.js';
import { endpointSliceToEndpoints } from './endpoint-slice.js';
import { ProxyStateTracker } from './proxy-state-tracker.js';
import { serviceToServicePorts } from './service-port.js';
import { slice, svc } from './builders.test-support.js';
import { RefusedObjects, validateDNS1035Label, validateDNS1123Label, validateDNS1123Subdomain, validateLabelValue, validatePortName } from './validation.js';

const HOSTILE = 'web\n-A KUBE-SERVICES -j X\n#';
const HOSTILE_NFT = 'web" ; flush ruleset ; add table ip x { comment "';

describe('validators (k8s.io/apimachinery validation)', () => {
  const valid = (f: (v: unknown) => string | undefined, ...values: unknown[]) => values.forEach((v) => expect(f(v), JSON.stringify(v)).toBeUndefined());
  const invalid = (f: (v: unknown) => string | undefined, ...values: unknown[]) => values.forEach((v) => expect(f(v), JSON.stringify(v)).toEqual(expect.any(String)));
  const controls = [HOSTILE, HOSTILE_NFT, 'a\rb', 'a\u0000b', 'a"b', 'a;b', 'a b', 'a\tb', 'a\u2028b'];

  it('DNS-1123 label: namespaces and EndpointSlice port names', () => {
    valid(validateDNS1123Label, 'a', '0', 'kube-system', '1abc', 'a'.repeat(63));
    invalid(validateDNS1123Label, '', 'A', '-a', 'a-', 'a.b', 'a_b', 'a'.repeat(64), 42, undefined, null, ...controls);
  });

  it('DNS-1035 label: Service names start with a letter', () => {
    valid(validateDNS1035Label, 'a', 'web', 'a-1', 'a'.repeat(63));
    invalid(validateDNS1035Label, '', '1abc', '0', 'Web', 'a-', 'a.b', 'a'.repeat(64), {}, ...controls);
  });

  it('DNS-1123 subdomain: EndpointSlice names', () => {
    valid(validateDNS1123Subdomain, 'web-abc12', 'a.b.c', '0', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`);
    invalid(validateDNS1123Subdomain, '', 'a..b', '.a', 'a.', 'A', 'a'.repeat(254), ...controls);
  });

  it('label values: kubernetes.io/service-name', () => {
    valid(validateLabelValue, '', 'web', 'Web_1.x', 'a'.repeat(63));
    invalid(validateLabelValue, '-a', 'a-', '_a', 'a/b', 'a'.repeat(64), 7, ...controls);
  });

  it('IANA_SVC_NAME: Service port names', () => {
    valid(validatePortName, 'http', 'h', 'a1', '1a', 'web-ui', 'a'.repeat(15));
    invalid(validatePortName, '', '123', 'a'.repeat(16), '-http', 'http-', 'we--b', 'Http', 'h_t', 'h.t', ...controls);
  });
});

function recordingLogger() {
  const warnings: { obj: Record<string, unknown>; msg?: string }[] = [];
  const logger: Logger = {
    debug() {},
    info() {},
    warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }),
    error() {},
    child: () => logger,
  };
  return { logger, warnings };
}

describe('hostile names in Services and EndpointSlices', () => {
  it('refuses a Service whose namespace, name or port name the API server would reject', () => {
    const cases = [
      svc('default', HOSTILE),
      svc(HOSTILE, 'web'),
      svc('default', 'web', { ports: [{ name: HOSTILE, port: 80 }] }),
      svc('default', 'web', { ports: [{ name: 'http', port: 80 }, { name: 'a'.repeat(16), port: 81 }] }),
      svc('default', 'web', { ports: [{ name: HOSTILE_NFT, port: 80 }] }),
      svc('default', '1web'),
      svc('default', ''),
    ];
    for (const s of cases) {
      const got = serviceToServicePorts(s, 'IPv4');
      expect(got.ports).toEqual([]);
      expect(got.invalid, JSON.stringify(s.metadata)).toMatch(/is invalid: /);
      expect(got.problems).toEqual([]);
    }
    // The message shows the value escaped: it is one log line.
    expect(serviceToServicePorts(svc('default', HOSTILE), 'IPv4').invalid).toBe(
      `name "web\\n-A KUBE-SERVICES -j X\\n#" is invalid: must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character`,
    );
  });

  it('refuses a multi-port Service with an unnamed port or a name used twice, as the API server does', () => {
    const unnamed = serviceToServicePorts(svc('default', 'web', { ports: [{ name: 'http', port: 80 }, { port: 81 }] }), 'IPv4');
    expect([unnamed.ports, unnamed.invalid]).toEqual([[], 'port 1 has no name; every port of a multi-port Service must be named']);
    const twice = serviceToServicePorts(svc('default', 'dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns', port: 53, protocol: 'TCP' }] }), 'IPv4');
    expect([twice.ports, twice.invalid]).toEqual([[], 'port name "dns" is used twice']);
    // A single unnamed port stays valid, and so do distinct names.
    expect(serviceToServicePorts(svc('default', 'web', { ports: [{ port: 80 }] }), 'IPv4').ports.map((p) => p.key)).toEqual(['default/web:/TCP']);
    const dns = serviceToServicePorts(svc('default', 'dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] }), 'IPv4');
    expect(dns.ports.map((p) => p.key)).toEqual(['default/dns:dns/UDP', 'default/dns:dns-tcp/TCP']);
  });

  it('keeps the longest valid names: 63-character namespace and name, 15-character port name', () => {
    const [ns, name, port] = [`n${'s'.repeat(62)}`, `s${'v'.repeat(62)}`, `p${'o'.repeat(14)}`];
    const got = serviceToServicePorts(svc(ns, name, { ports: [{ name: port, port: 80 }] }), 'IPv4');
    expect(got.invalid).toBeUndefined();
    expect(got.ports.map((p) => p.key)).toEqual([`${ns}/${name}:${port}/TCP`]);
    const conv = endpointSliceToEndpoints(slice(ns, name, `${name}-abcde`, ['10.0.0.1'], [{ name: port, port: 8080 }]), 'IPv4', { nodeName: 'n' });
    expect([conv.invalid, conv.ports.map((p) => p.key)]).toEqual([undefined, [`${ns}/${name}:${port}/TCP`]]);
  });

  it('refuses an EndpointSlice with a bad namespace, name, service-name label or port name', () => {
    const opts = { nodeName: 'n' };
    const bad = [
      slice(HOSTILE, 'web', 'web-1', ['10.0.0.1']),
      slice('default', HOSTILE, 'web-1', ['10.0.0.1']),
      slice('default', 'web', HOSTILE, ['10.0.0.1']),
      slice('default', 'web', 'Web_1', ['10.0.0.1']),
      slice('default', 'web', 'web-1', ['10.0.0.1'], [{ name: HOSTILE_NFT, port: 80 }]),
    ];
    for (const s of bad) {
      const got = endpointSliceToEndpoints(s, 'IPv4', opts);
      expect(got.ports).toEqual([]);
      expect(got.invalid, JSON.stringify(s.metadata)).toMatch(/is invalid: /);
    }
  });

  it('drops a hostile object with one warning, and serves the good ones beside it', () => {
    const { logger, warnings } = recordingLogger();
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'n', logger });
    t.onServiceAdd(svc('default', 'good', { clusterIP: '172.30.0.1' }));
    t.onEndpointSliceAdd(slice('default', 'good', 'good-1', ['10.0.0.1']));
    t.onServiceAdd(svc('default', HOSTILE, { clusterIP: '172.30.0.2', externalIPs: ['nope'] }));
    t.onEndpointSliceAdd(slice('default', HOSTILE, 'bad-1', ['10.0.0.2', '10.0.0.999']));
    t.onServiceAdd(svc('default', 'ports', { clusterIP: '172.30.0.3', ports: [{ name: 'http', port: 80 }, { name: HOSTILE_NFT, port: 81 }] }));
    const { state } = t.checkpoint();
    expect([...state.services.keys()]).toEqual(['default/good:p80/TCP']);
    expect([...state.endpoints.keys()]).toEqual(['default/good:p80/TCP']);
    expect(warnings.map((w) => w.msg)).toEqual(['Ignoring invalid Service', 'Ignoring invalid EndpointSlice', 'Ignoring invalid Service']);
    expect(warnings[0]!.obj).toMatchObject({ service: `default/${HOSTILE}`, reason: expect.stringMatching(/^name ".*" is invalid/) });
  });

  it('an update that makes a Service invalid withdraws it; a slice whose port name goes bad is forgotten', () => {
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'n' });
    const good = svc('default', 'web', { ports: [{ name: 'http', port: 80 }] });
    const goodSlice = slice('default', 'web', 'web-1', ['10.0.0.1'], [{ name: 'http', port: 8080 }]);
    t.onServiceAdd(good);
    t.onEndpointSliceAdd(goodSlice);
    expect(t.checkpoint().state.endpoints.get('default/web:http/TCP')).toHaveLength(1);
    const bad = svc('default', 'web', { ports: [{ name: 'http\n', port: 80 }] });
    t.onServiceUpdate(good, bad);
    t.onEndpointSliceUpdate(goodSlice, slice('default', 'web', 'web-1', ['10.0.0.1'], [{ name: 'http\n', port: 8080 }]));
    const { state } = t.checkpoint();
    expect(state.services.size).toBe(0);
    expect(state.endpoints.size).toBe(0);
  });

  it('reports a refused object once across both families and repeated events, and again once it was fixed and broke anew', () => {
    const { logger, warnings } = recordingLogger();
    const refused = new RefusedObjects();
    const v4 = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'n', logger, refused });
    const v6 = new ProxyStateTracker({ ipFamily: 'IPv6', nodeName: 'n', logger, refused });
    const bad = svc('default', 'web', { ports: [{ name: 'http\n', port: 80 }] });
    const badSlice = slice('default', 'web', 'web-1', ['10.0.0.1'], [{ name: 'http\n', port: 80 }]);
    for (const t of [v4, v6, v4]) {
      t.onServiceAdd(bad);
      t.onEndpointSliceAdd(badSlice);
    }
    expect(warnings.map((w) => w.msg)).toEqual(['Ignoring invalid Service', 'Ignoring invalid EndpointSlice']);
    const good = svc('default', 'web', { ports: [{ name: 'http', port: 80 }] });
    for (const t of [v4, v6]) {
      t.onServiceUpdate(bad, good);
      t.onEndpointSliceDelete(badSlice);
    }
    expect(refused.size).toBe(0);
    for (const t of [v4, v6]) t.onServiceUpdate(good, bad);
    expect(warnings).toHaveLength(3);
  });
});
