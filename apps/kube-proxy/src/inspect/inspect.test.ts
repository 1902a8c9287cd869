import { afterEach, describe, expect, it } from 'vitest';
import type { Backend, ExplainPacket, KernelView, ProxyState, ServicePort } from '@kube-proxy-ts/core';
import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { endpointRecord, servicePortRecord } from '@kube-proxy-ts/core/fixtures';
import { createRegistry } from '../daemon/metrics.js';
import { debugHandler, type DebugTarget } from '../server/debug-handler.js';
import { listenOn, type RunningServer } from '../server/listen.js';
import { metricsHandler } from '../server/metrics-server.js';
import { runSubcommand } from './command.js';
import type { InspectReport } from './report.js';

const web = servicePortRecord({ name: { namespace: 'e2e', name: 'web', port: 'http', protocol: 'TCP' }, clusterIP: '10.96.0.10' });
const local = servicePortRecord({
  name: { namespace: 'e2e', name: 'local', port: 'http', protocol: 'TCP' },
  clusterIP: '10.96.0.13',
  type: 'NodePort',
  nodePort: 30081,
  externalPolicyLocal: true,
});
const here = (ip: string, o = {}) => endpointRecord(ip, 8080, { nodeName: 'node1', isLocal: true, ...o });

const state: ProxyState = {
  ipFamily: 'IPv4',
  services: new Map([[web.key, web], [local.key, local]]),
  endpoints: new Map([
    [web.key, [here('10.244.1.11'), here('10.244.1.12'), here('10.244.1.13', { ready: false, serving: false })]],
    [local.key, [here('10.244.1.11'), endpointRecord('10.244.2.5', 8080, { nodeName: 'node2' })]],
  ]),
  node: { name: 'node1', labels: {}, zone: undefined, podCIDRs: [], addresses: ['192.168.50.1'], eligible: true },
};

/** A kernel that lost web's second endpoint. */
const kernel: KernelView = {
  mode: 'fake',
  ipFamily: 'IPv4',
  servicePorts: {
    [web.key]: { frontends: ['10.96.0.10:80/TCP'], endpoints: ['10.244.1.11:8080'], blocked: [], objects: ['chain web'] },
    [local.key]: { frontends: ['10.96.0.13:80/TCP', 'NodePort 30081/TCP'], endpoints: ['10.244.1.11:8080', '10.244.2.5:8080'], blocked: [], objects: [] },
  },
  unowned: ['chain gone'],
};

function fakeBackend(extra: Partial<Backend> = {}): Backend & { asked: ServicePort[][]; packets: ExplainPacket[] } {
  const asked: ServicePort[][] = [];
  const packets: ExplainPacket[] = [];
  return {
    name: 'fake',
    asked,
    packets,
    start: async () => {},
    sync: async () => ({ ok: true, full: true }),
    cleanup: async () => {},
    kernelView: async (sps) => {
      asked.push([...sps]);
      return kernel;
    },
    explain: async (packet) => {
      packets.push(packet);
      return { mode: 'fake', ipFamily: 'IPv4', packet, servicePort: 'e2e/web:http', paths: [{ steps: ['a', 'b'], endpoint: '10.244.1.11:8080', probability: 0.5, masquerade: false, verdict: 'accept' }] };
    },
    ...extra,
  };
}

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function daemonWith(targets: DebugTarget[]): Promise<string> {
  const config = defaultProxyConfig();
  server = await listenOn('127.0.0.1', 0, metricsHandler(createRegistry(), config, debugHandler({ mode: 'fake', targets: () => targets })));
  return `--metrics-bind-address=127.0.0.1:${server.address.port}`;
}

async function run(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runSubcommand(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe('kube-proxy inspect', () => {
  it('lists each service port with the endpoints it uses and marks where the kernel differs', async () => {
    const addr = await daemonWith([{ ipFamily: 'IPv4', backend: fakeBackend(), state }]);
    const r = await run(['inspect', addr]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/e2e\/local:http\/TCP\s+IPv4\s+NodePort\s+10\.96\.0\.13:80,NodePort 30081\s+2\/2\s+in sync/);
    expect(r.stdout).toMatch(/e2e\/web:http\/TCP\s+IPv4\s+ClusterIP\s+10\.96\.0\.10:80\s+2\/3\s+DRIFT -10\.244\.1\.12:8080/);
    expect(r.stdout).toContain('left in the kernel by no current Service: chain gone');
  });

  it('tells one Service\'s story: why an endpoint is left out, per traffic policy', async () => {
    const backend = fakeBackend();
    const addr = await daemonWith([{ ipFamily: 'IPv4', backend, state }]);
    const r = await run(['inspect', 'e2e/local', addr]);
    expect(r.stdout).toMatch(/10\.244\.2\.5:8080\s+node2\s+-\s+yes\s+yes\s+no\s+cluster\s+on another node \(node2\): externalTrafficPolicy Local/);
    expect(r.stdout).toMatch(/10\.244\.1\.11:8080\s+node1\s+-\s+yes\s+yes\s+no\s+cluster,local\n/);
    expect(backend.asked).toEqual([[local]]);
    const json = await run(['inspect', 'e2e/web', '-o', 'json', addr]);
    const report = JSON.parse(json.stdout) as InspectReport;
    expect(report.servicePorts.map((sp) => sp.servicePort)).toEqual(['e2e/web:http']);
    expect(report.servicePorts[0]!.drift).toEqual({ missingFrontends: [], unexpectedFrontends: [], missingEndpoints: ['10.244.1.12:8080'], unexpectedEndpoints: [] });
    expect(report.servicePorts[0]!.endpoints.find((e) => e.endpoint === '10.244.1.13:8080')).toMatchObject({ usedFor: [], reason: 'not ready' });
  });

  it('still shows the desired state when the backend cannot read the kernel back, or it fails', async () => {
    const addr = await daemonWith([{ ipFamily: 'IPv4', backend: fakeBackend({ kernelView: async () => Promise.reject(new Error('iptables-save -t nat failed: boom')) }), state }]);
    const r = await run(['inspect', addr]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('IPv4: the kernel could not be read: iptables-save -t nat failed: boom');
    expect(r.stdout).toMatch(/e2e\/web:http\/TCP .* unread/);
  });

  it('says plainly when no daemon answers, and refuses bad arguments before asking', async () => {
    const addr = await daemonWith([]);
    await server!.close();
    server = undefined;
    const down = await run(['inspect', addr]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach kube-proxy at http:\/\/127\.0\.0\.1:\d+ .*Is it running on this node/);
    expect((await run(['inspect', '-o', 'yaml'])).stderr).toMatch(/-o yaml: want table or json/);
    expect((await run(['inspect', '--metrics-bind-address', 'localhost:10249'])).stderr).toMatch(/want IP:PORT/);
  });
});

describe('kube-proxy explain', () => {
  it('passes the packet to the backend of its family and prints the paths', async () => {
    const backend = fakeBackend();
    const addr = await daemonWith([{ ipFamily: 'IPv4', backend, state }]);
    const r = await run(['explain', '--from', '10.244.1.100', '--to', '10.96.0.10:80/tcp', addr]);
    expect(r.code).toBe(0);
    expect(backend.packets).toEqual([{ src: '10.244.1.100', dst: '10.96.0.10', port: 80, protocol: 'TCP' }]);
    expect(r.stdout).toContain('10.244.1.100 -> 10.96.0.10:80/TCP (fake, IPv4): service port e2e/web:http');
    expect(r.stdout).toMatch(/50%\s+10\.244\.1\.11:8080\s+accept\s+no\s+a > b/);
  });

  it('rejects a malformed destination or mixed families with a clear error', async () => {
    const addr = await daemonWith([{ ipFamily: 'IPv4', backend: fakeBackend(), state }]);
    const bad = await run(['explain', '--from', '10.244.1.100', '--to', '10.96.0.10', addr]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/want IP:PORT\/PROTO/);
    const mixed = await run(['explain', '--from', '10.244.1.100', '--to', '[fd00::1]:80/TCP', addr]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(/answered 400: .*different IP families/);
    const noExplain = fakeBackend();
    delete (noExplain as Partial<Backend>).explain;
    const addr2 = await daemonWith([{ ipFamily: 'IPv4', backend: noExplain, state }]);
    expect((await run(['explain', '--from', '10.0.0.1', '--to', '10.96.0.10:80', addr2])).stderr).toMatch(/answered 501: the fake backend cannot explain a packet/);
  });
});
