import { describe, expect, it } from 'vitest';
import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { formatDuration, parseDuration } from './duration.js';
import { ConfigError } from './field-error.js';
import { decodeKubeProxyConfiguration, defaultKubeProxyConfig, encodeKubeProxyConfiguration } from './v1alpha1.js';
import { validateProxyConfig } from './validate.js';
import { formatFieldError } from './field-error.js';

const HEAD = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';

/** Decodes and validates like the daemon; returns the error lines. */
function problems(body: string): string[] {
  try {
    const { config } = decodeKubeProxyConfiguration(HEAD + body);
    return validateProxyConfig(config).map(formatFieldError);
  } catch (e) {
    if (e instanceof ConfigError) return e.errors.map(formatFieldError);
    throw e;
  }
}

describe('durations', () => {
  it.each([
    ['30s', 30_000],
    ['1m0s', 60_000],
    ['0s', 0],
    ['0', 0],
    ['250ms', 250],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['-1s', -1000],
  ])('parses %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '30', 's', '1x', '1s2'])('rejects %j', (text) => expect(() => parseDuration(text)).toThrow(/invalid duration/));

  it.each([
    [30_000, '30s'],
    [60_000, '1m0s'],
    [900_000, '15m0s'],
    [86_400_000, '24h0m0s'],
    [250, '250ms'],
    [0, '0s'],
  ])('formats %d as %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('KubeProxyConfiguration v1alpha1', () => {
  it("loads the design card's ConfigMap config unchanged", () => {
    const text = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16
mode: "iptables"
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 0s
  syncPeriod: 30s
`;
    const { config, warnings } = decodeKubeProxyConfiguration(text);
    expect(warnings).toEqual([]);
    expect(validateProxyConfig(config)).toEqual([]);
    expect(config.clientConnection.kubeconfig).toBe('/var/lib/kube-proxy/kubeconfig.conf');
    expect(config.clusterCIDR).toBe('10.244.0.0/16');
    expect(config.mode).toBe('iptables');
    expect(config.iptables.masqueradeBit).toBe(14);
    expect(config.syncPeriod).toBe(30_000);
    // v1alpha1 cannot tell 0s from unset: upstream defaults it to 1s.
    expect(config.minSyncPeriod).toBe(1_000);
    expect(config.healthzBindAddress).toBe('0.0.0.0:10256');
    expect(config.metricsBindAddress).toBe('127.0.0.1:10249');
  });

  it('an empty document gives the defaults', () => {
    const { config } = decodeKubeProxyConfiguration(HEAD);
    expect(config).toEqual(defaultKubeProxyConfig());
    expect(config).toMatchObject({ logging: { format: 'text' }, clientConnection: { contentType: 'application/json' } });
  });

  it('defaults follow upstream v1alpha1 defaults.go', () => {
    const c = defaultProxyConfig();
    expect(c.iptables).toMatchObject({ masqueradeBit: 14, masqueradeAll: false, localhostNodePorts: true, syncPeriod: 30_000, minSyncPeriod: 1_000 });
    expect(c.ipvs).toMatchObject({ syncPeriod: 30_000, minSyncPeriod: 0 });
    expect(c.nftables).toMatchObject({ syncPeriod: 30_000, minSyncPeriod: 1_000, masqueradeBit: 14 });
    expect(c.conntrack).toMatchObject({ maxPerCore: 32768, min: 131072, tcpEstablishedTimeout: 86_400_000, tcpCloseWaitTimeout: 3_600_000 });
    expect(c.clientConnection).toMatchObject({ qps: 5, burst: 10, contentType: 'application/vnd.kubernetes.protobuf' });
    expect(c.oomScoreAdj).toBe(-999);
    expect(c.configSyncPeriod).toBe(900_000);
    expect(c.udpIdleTimeout).toBe(250);
  });

  it('derives healthz/metrics defaults from an IPv6 bind address and appends ports', () => {
    expect(decodeKubeProxyConfiguration(HEAD + 'bindAddress: "::"').config).toMatchObject({ healthzBindAddress: '[::]:10256', metricsBindAddress: '[::1]:10249' });
    expect(decodeKubeProxyConfiguration(HEAD + 'metricsBindAddress: 0.0.0.0').config.metricsBindAddress).toBe('0.0.0.0:10249');
  });

  it('takes the sync periods of the selected mode', () => {
    const y = 'mode: ipvs\nipvs:\n  syncPeriod: 1m0s\n  minSyncPeriod: 5s\niptables:\n  syncPeriod: 10s\n';
    expect(decodeKubeProxyConfiguration(HEAD + y).config).toMatchObject({ syncPeriod: 60_000, minSyncPeriod: 5_000 });
    const n = 'mode: nftables\nnftables:\n  syncPeriod: 20s\n';
    expect(decodeKubeProxyConfiguration(HEAD + n).config).toMatchObject({ syncPeriod: 20_000, minSyncPeriod: 1_000 });
  });

  it('reads JSON too', () => {
    const { config } = decodeKubeProxyConfiguration(JSON.stringify({ apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', mode: 'nftables' }));
    expect(config.mode).toBe('nftables');
  });

  it('unknown and duplicate fields: strict decoding fails, lenient decoding is used with a warning', () => {
    const r = decodeKubeProxyConfiguration(HEAD + 'bogus: 1\niptables:\n  masqueradeBitt: 3\n');
    expect(r.warnings).toEqual(['strict decoding failed, using lenient decoding: unknown field "bogus", unknown field "iptables.masqueradeBitt"']);
    const d = decodeKubeProxyConfiguration(HEAD + 'mode: ipvs\nmode: nftables\n');
    expect(d.warnings).toEqual(['strict decoding failed, using lenient decoding: duplicate field "mode" (the last value is used)']);
    expect(d.config.mode).toBe('nftables');
  });

  it('writes a defaulted config that reads back to the same configuration', () => {
    const c = decodeKubeProxyConfiguration(HEAD + 'clusterCIDR: 10.244.0.0/16\nipvs:\n  excludeCIDRs: [10.0.0.0/8]\n').config;
    const again = decodeKubeProxyConfiguration(encodeKubeProxyConfiguration(c));
    expect(again.warnings).toEqual([]);
    expect(again.config).toEqual(c);
    expect(encodeKubeProxyConfiguration(c)).toMatch(/syncPeriod: 30s/);
  });

  // Each bad input, with the exact message naming the field and the value.
  it.each([
    ['kind: Wrong', ['kind: Invalid value: "Wrong": must be KubeProxyConfiguration']],
    ['iptables:\n  masqueradeBit: 32', ['iptables.masqueradeBit: Invalid value: 32: must be within the range [0, 31]']],
    ['iptables:\n  masqueradeBit: -1', ['iptables.masqueradeBit: Invalid value: -1: must be within the range [0, 31]']],
    ['iptables:\n  masqueradeBit: "14"', ['iptables.masqueradeBit: Invalid value: "14": must be an integer']],
    ['iptables:\n  syncPeriod: 30', ['iptables.syncPeriod: Invalid value: 30: must be a duration string such as "30s" or "1m0s"']],
    ['iptables:\n  syncPeriod: 30x', ['iptables.syncPeriod: Invalid value: "30x": invalid duration "30x" (expected e.g. "30s", "1m0s", "250ms")']],
    ['iptables:\n  syncPeriod: 5s\n  minSyncPeriod: 10s', ['iptables.syncPeriod: Invalid value: "10s": must be greater than or equal to iptables.minSyncPeriod']],
    [
      'iptables:\n  syncPeriod: -5s',
      ['iptables.syncPeriod: Invalid value: "-5s": must be greater than 0', 'iptables.syncPeriod: Invalid value: "1s": must be greater than or equal to iptables.minSyncPeriod'],
    ],
    ['iptables:\n  minSyncPeriod: -1s', ['iptables.minSyncPeriod: Invalid value: "-1s": must be greater than or equal to 0']],
    ['bindAddress: 10.0.0.300', ['bindAddress: Invalid value: "10.0.0.300": not a valid textual representation of an IP address']],
    ['healthzBindAddress: 0.0.0.0:99999', ['healthzBindAddress: Invalid value: "99999": must be a valid port']],
    ['metricsBindAddress: "foo:10249"', ['metricsBindAddress: Invalid value: "foo": must be a valid IP']],
    ['clusterCIDR: 10.244.0.0/33', ['clusterCIDR: Invalid value: "10.244.0.0/33": must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)']],
    ['clusterCIDR: 10.0.0.0/8,10.1.0.0/16', ['clusterCIDR: Invalid value: "10.0.0.0/8,10.1.0.0/16": must be a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48): at most one CIDR per IP family']],
    ['oomScoreAdj: 1001', ['oomScoreAdj: Invalid value: 1001: must be within the range [-1000, 1000]']],
    ['mode: ipvs\nipvs:\n  scheduler: fifo', ['ipvs.scheduler: Invalid value: "fifo": must be one of rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq, mh, or blank (rr)']],
    ['mode: ipvs\nipvs:\n  excludeCIDRs: [10.0.0.0]', ['ipvs.excludeCIDRs[0]: Invalid value: "10.0.0.0": must be a valid CIDR']],
    ['mode: "Bad Mode"', ['mode: Invalid value: "Bad Mode": must be iptables, ipvs, nftables, userspace, the name of an installed backend package, or blank (iptables)']],
    ['nodePortAddresses: [10.0.0.0/8, primary]', ["nodePortAddresses[1]: Invalid value: \"primary\": can't use both 'primary' and CIDRs"]],
    ['nodePortAddresses: [nope]', ["nodePortAddresses[0]: Invalid value: \"nope\": must be a valid CIDR (or the single value 'primary')"]],
    ['detectLocalMode: Magic', ['detectLocalMode: Invalid value: "Magic": supported values: "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"']],
    ['detectLocalMode: BridgeInterface', ['detectLocal.bridgeInterface: Invalid value: "": must not be empty when detectLocalMode is BridgeInterface']],
    ['conntrack:\n  maxPerCore: -1', ['conntrack.maxPerCore: Invalid value: -1: must be greater than or equal to 0']],
    ['portRange: 2000-1000', ['portRange: Invalid value: "2000-1000": must be a valid port range (e.g. 300-2000)']],
    ['clientConnection: 5', ['clientConnection: Invalid value: 5: must be an object']],
    ['featureGates:\n  Foo: yes please', ['featureGates: Invalid value: {"Foo":"yes please"}: must be a map of feature name to true or false']],
  ])('rejects %j', (body, expected) => {
    expect(problems(body)).toEqual(expected);
  });

  it('rejects text that is not a document', () => {
    expect(problems('- a\n- b')[0]).toMatch(/^<document>: Invalid value: \["a","b"\]|^<document>/);
    expect(() => decodeKubeProxyConfiguration('a: [')).toThrow(ConfigError);
  });

  it('accepts the good configurations', () => {
    for (const body of [
      '',
      'mode: nftables\nnftables:\n  masqueradeBit: 5',
      'mode: ipvs\nipvs:\n  scheduler: mh\n  excludeCIDRs: [10.0.0.0/8]',
      'clusterCIDR: 10.244.0.0/16,fd00:10:244::/56',
      'nodePortAddresses: [primary]',
      'nodePortAddresses: [192.168.0.0/16, "fd00::/8"]',
      'metricsBindAddress: ""',
      'detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth',
      'mode: "@acme/kube-proxy-backend-x"',
      'portRange: 30000+100',
    ]) {
      expect(problems(body), body).toEqual([]);
    }
  });
});
