import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { NOT_SIMPLE, readBlockYaml } from './block-yaml.js';

// The reader must agree with the `yaml` package whenever it answers at all.
function agrees(text: string): void {
  const fast = readBlockYaml(text);
  if (fast === NOT_SIMPLE) return;
  expect(fast).toEqual(parse(text) ?? null);
}

const KUBECTL_STYLE = `apiVersion: v1
kind: Service
metadata:
  name: web   # the front end
  namespace: demo
  labels:
    app.kubernetes.io/name: web
  annotations:
    note: "a: quoted \\"value\\""
    other: 'it''s'
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs:
  - 10.96.0.10
  ipFamilies: []
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
  -   name: dns
      port: 53
      protocol: UDP
      targetPort: dns-tcp
  externalIPs:
    - 192.0.2.1
  selector: {}
  sessionAffinity: None
  publishNotReadyAddresses: false
  healthCheckNodePort: ~
  loadBalancerClass: null
  trailing:
`;

describe('readBlockYaml', () => {
  it('reads what kubectl writes exactly as the yaml package does', () => {
    const fast = readBlockYaml(KUBECTL_STYLE);
    expect(fast).not.toBe(NOT_SIMPLE);
    expect(fast).toEqual(parse(KUBECTL_STYLE));
  });

  it('gives up on what it does not fully understand, and the yaml package reads it', () => {
    const hard = [
      'a: &x 1\nb: *x\n',
      'a: !!str 1\n',
      'a: |\n  text\n',
      'a: >\n  folded\n',
      'a: [1, 2]\n',
      'a: {b: 1}\n',
      'a: plain\n  continued\n',
      'a: "two\n  lines"\n',
      'a: 1.5\n',
      'a: 0x1F\n',
      'a: .inf\n',
      'a: "\\x41"\n',
      'a: 1\na: 2\n',
      'true: 1\n',
      '__proto__: 1\n',
      '? complex\n: key\n',
      'a:\n\t- tab\n',
      'a: 12345678901234567890\n',
    ];
    for (const text of hard) expect(readBlockYaml(text), text).toBe(NOT_SIMPLE);
  });

  it('agrees with the yaml package on generated documents', () => {
    const key = fc.stringMatching(/^[a-z][a-zA-Z0-9./-]{0,8}$/);
    const scalar = fc.oneof(
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.double({ noNaN: true }),
      fc.string({ maxLength: 12 }),
      fc.stringMatching(/^[0-9a-f.:#,\- ]{1,10}$/),
      fc.constantFrom('10.0.0.1', 'null', 'True', '~', '0o17', '1e3', '-', '- x', 'a: b', "it's", '"q"', '#x', 'a #b'),
    );
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, scalar, tie('list'), tie('map')),
      list: fc.array(tie('node'), { maxLength: 4 }),
      map: fc.dictionary(key, tie('node'), { maxKeys: 4 }),
    })).map;
    fc.assert(
      fc.property(value, fc.constantFrom(1, 2, 4), fc.boolean(), (v, indent, indentSeq) => {
        agrees(stringify(v, { indent, indentSeq }));
      }),
      { numRuns: 400 },
    );
  });

  it('reads an empty or comment-only document as null', () => {
    expect(readBlockYaml('')).toBeNull();
    expect(readBlockYaml('# nothing\n\n')).toBeNull();
  });
});
