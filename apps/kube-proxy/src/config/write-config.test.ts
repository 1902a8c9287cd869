// --write-config-to must write what upstream v1.34's strict decoder accepts: every field it has
// (k8s.io/kube-proxy/config/v1alpha1 types.go, component-base's ClientConnectionConfiguration and
// LoggingConfiguration) and none it dropped.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { resolveOptions } from '../cli/options.js';
import { main } from '../main.js';
import { decodeKubeProxyConfiguration } from './v1alpha1.js';

// Upstream v1.34's field list, written out here so that the test does not trust the encoder.
const UPSTREAM_V1_34: Record<string, true | Record<string, true | Record<string, unknown>>> = {
  apiVersion: true,
  kind: true,
  featureGates: true,
  clientConnection: { kubeconfig: true, acceptContentTypes: true, contentType: true, qps: true, burst: true },
  logging: { format: true, flushFrequency: true, verbosity: true, vmodule: true, options: { text: { splitStream: true, infoBufferSize: true }, json: { splitStream: true, infoBufferSize: true } } },
  hostnameOverride: true,
  bindAddress: true,
  healthzBindAddress: true,
  metricsBindAddress: true,
  bindAddressHardFail: true,
  enableProfiling: true,
  showHiddenMetricsForVersion: true,
  mode: true,
  iptables: { masqueradeBit: true, masqueradeAll: true, localhostNodePorts: true, syncPeriod: true, minSyncPeriod: true },
  ipvs: { syncPeriod: true, minSyncPeriod: true, scheduler: true, excludeCIDRs: true, strictARP: true, tcpTimeout: true, tcpFinTimeout: true, udpTimeout: true },
  nftables: { masqueradeBit: true, masqueradeAll: true, syncPeriod: true, minSyncPeriod: true },
  winkernel: { networkName: true, sourceVip: true, enableDSR: true, rootHnsEndpointName: true, forwardHealthCheckVip: true },
  detectLocalMode: true,
  detectLocal: { bridgeInterface: true, interfaceNamePrefix: true },
  clusterCIDR: true,
  nodePortAddresses: true,
  oomScoreAdj: true,
  conntrack: { maxPerCore: true, min: true, tcpEstablishedTimeout: true, tcpCloseWaitTimeout: true, tcpBeLiberal: true, udpTimeout: true, udpStreamTimeout: true },
  configSyncPeriod: true,
  portRange: true,
  windowsRunAsService: true,
};
// Upstream writes these with omitempty, or only on Windows; everything else must be present.
const OPTIONAL = new Set(['featureGates', 'windowsRunAsService', 'logging.vmodule', 'logging.options.text.splitStream', 'logging.options.json.splitStream']);

/** Paths of `doc` unknown to `schema`, and paths of `schema` missing from `doc`. */
function compare(doc: Record<string, unknown>, schema: Record<string, unknown>, prefix = ''): { unknown: string[]; missing: string[] } {
  const unknown: string[] = [];
  const missing: string[] = [];
  for (const [k, v] of Object.entries(doc)) {
    const path = prefix + k;
    const s = schema[k];
    if (s === undefined) unknown.push(path);
    else if (typeof s === 'object' && v && typeof v === 'object' && !Array.isArray(v)) {
      const sub = compare(v as Record<string, unknown>, s as Record<string, unknown>, `${path}.`);
      unknown.push(...sub.unknown);
      missing.push(...sub.missing);
    }
  }
  for (const [k, s] of Object.entries(schema)) {
    const path = prefix + k;
    if (!(k in doc)) {
      if (!OPTIONAL.has(path)) missing.push(path);
    } else if (typeof s === 'object' && (doc[k] === null || typeof doc[k] !== 'object')) {
      missing.push(`${path} (not an object)`);
    }
  }
  return { unknown, missing };
}

const dir = mkdtempSync(join(tmpdir(), 'kpts-write-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function writeConfig(args: string[]): Promise<string> {
  const target = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  let out = '';
  let err = '';
  const code = await main([`--write-config-to=${target}`, ...args], { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  expect({ code, err }).toEqual({ code: 0, err: '' });
  expect(out).toBe(`Wrote configuration to: ${target}\n`);
  return readFileSync(target, 'utf8');
}

describe('--write-config-to', () => {
  it("writes every field of upstream v1.34's KubeProxyConfiguration and no field upstream dropped", async () => {
    const doc = parse(await writeConfig(['--cluster-cidr=10.244.0.0/16'])) as Record<string, unknown>;
    expect(compare(doc, UPSTREAM_V1_34)).toEqual({ unknown: [], missing: [] });
    expect(doc).toMatchObject({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clusterCIDR: '10.244.0.0/16',
      logging: { format: 'text', verbosity: 0 },
      clientConnection: { contentType: 'application/json', qps: 5, burst: 10 },
    });
    expect(doc).not.toHaveProperty('udpIdleTimeout');
  });

  it('carries the flags given and reads back without warnings', async () => {
    const text = await writeConfig(['--proxy-mode=nftables', '--logging-format=json', '-v=3', '--masquerade-all']);
    const { config, warnings } = decodeKubeProxyConfiguration(text);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ mode: 'nftables', logging: { format: 'json', verbosity: 3 }, nftables: { masqueradeAll: true } });
  });

  it('keeps udpIdleTimeout for the userspace mode only, which still reads it', async () => {
    const doc = parse(await writeConfig(['--proxy-mode=userspace', '--udp-timeout=2s'])) as Record<string, unknown>;
    expect(doc.udpIdleTimeout).toBe('2s');
  });
});

describe('clientConnection.contentType', () => {
  const HEAD = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';
  const PROTOBUF_WARNING = 'clientConnection.contentType "application/vnd.kubernetes.protobuf" is accepted, but requests to the API server use application/json';

  it('protobuf in a config file is accepted with one warning', () => {
    const files: Record<string, string> = { '/c.yaml': `${HEAD}clientConnection:\n  kubeconfig: /k\n  contentType: application/vnd.kubernetes.protobuf\n` };
    const options = resolveOptions(['--config=/c.yaml'], { readFile: (p) => files[p] as string });
    expect(options.warnings).toEqual([`/c.yaml: ${PROTOBUF_WARNING}`]);
    expect(options.config.clientConnection.kubeconfig).toBe('/k');
  });

  it('protobuf from --kube-api-content-type is accepted with one warning; JSON or unset gives none', () => {
    expect(resolveOptions(['--kube-api-content-type=application/vnd.kubernetes.protobuf']).warnings).toEqual([PROTOBUF_WARNING]);
    expect(resolveOptions(['--kube-api-content-type=application/json']).warnings).toEqual([]);
    expect(resolveOptions([]).warnings).toEqual([]);
  });
});
