import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { servicePortDrift } from '@kube-proxy-ts/core';
import { createRecordingRunner, INSPECT_WORLD_NODE_IP, inspectWorld } from '@kube-proxy-ts/testing';
import { listTableForInspection, nftablesExplain, nftablesKernelView, parseNftTable } from './kernel-view.js';

// `nft -j list table ip kube-proxy` of a node namespace running the daemon on the inspect world
// (e2e/capture-inspect-samples.ts).
const LISTING = readFileSync(new URL('./testdata/inspect-world.nft.json', import.meta.url), 'utf8');
const table = parseNftTable(LISTING);
const world = inspectWorld();
const servicePorts = Object.values(world).map((w) => w.servicePort);
const explain = (src: string, dst: string, port: number) => nftablesExplain(table, { src, dst, port, protocol: 'TCP' }, [INSPECT_WORLD_NODE_IP], 'IPv4');

describe('nftables kernel view', () => {
  const view = nftablesKernelView(table, servicePorts, 'IPv4');

  it('indexes the verdict maps and service chains by service port', () => {
    expect(view.servicePorts['e2e/web:http/TCP']).toMatchObject({ frontends: ['10.96.0.10:80/TCP'], endpoints: ['10.244.1.11:8080', '10.244.1.12:8080'], blocked: [] });
    expect(view.servicePorts['e2e/np:http/TCP']!.frontends).toEqual(['10.96.0.11:80/TCP', 'NodePort 30080/TCP']);
    expect(view.servicePorts['e2e/empty:http/TCP']).toMatchObject({
      frontends: ['10.96.0.12:80/TCP'],
      endpoints: [],
      blocked: ['10.96.0.12:80/TCP reject: no endpoints (no-endpoint-services e2e/empty:http)'],
    });
    expect(view.servicePorts['e2e/local:http/TCP']!.endpoints).toEqual(['10.244.1.11:8080', '10.244.2.5:8080']);
    expect(view.servicePorts['e2e/lb:http/TCP']!.frontends).toEqual(['10.96.0.15:80/TCP', '203.0.113.10:80/TCP', 'NodePort 30082/TCP']);
    expect(view.servicePorts['e2e/lb:http/TCP']!.blocked).toEqual(['203.0.113.10:80/TCP drop: sources outside loadBalancerSourceRanges (firewall-AQCUM7E5-e2e/lb/tcp/http)']);
    expect(view.unowned).toEqual([]);
  });

  it('agrees with what a sync would program for every service port of the recorded node', () => {
    for (const { servicePort, endpoints } of Object.values(world)) {
      expect(servicePortDrift(servicePort, endpoints, { name: 'node1', zone: undefined }, view.servicePorts[servicePort.key]), servicePort.key).toBeUndefined();
    }
  });

  it('shows drift when a map element is gone, and leftovers of services no longer wanted', () => {
    const doc = JSON.parse(LISTING) as { nftables: { map?: { name: string; elem: unknown[][] } }[] };
    const nodePorts = doc.nftables.find((o) => o.map?.name === 'service-nodeports')!.map!;
    nodePorts.elem = nodePorts.elem.filter((e) => JSON.stringify(e).indexOf('30081') < 0);
    const edited = nftablesKernelView(parseNftTable(JSON.stringify(doc)), servicePorts.filter((sp) => sp.name.name !== 'np'), 'IPv4');
    const drift = servicePortDrift(world.local!.servicePort, world.local!.endpoints, { name: 'node1', zone: undefined }, edited.servicePorts['e2e/local:http/TCP']);
    expect(drift?.missingFrontends).toEqual(['NodePort 30081/TCP']);
    expect(edited.unowned).toEqual([
      'chain external-KHFGJ22K-e2e/np/tcp/http',
      'chain service-KHFGJ22K-e2e/np/tcp/http',
    ]);
  });

  it('lists the table with one nft command, and says so when it fails', async () => {
    const runner = createRecordingRunner().on('nft', { stdout: LISTING });
    await listTableForInspection(runner, 'IPv4', 1000);
    expect(runner.calls.map((c) => c.args.join(' '))).toEqual(['-j list table ip kube-proxy']);
    const failing = createRecordingRunner().on('nft', { code: 1, stderr: 'Error: No such file or directory' });
    await expect(listTableForInspection(failing, 'IPv6', 1000)).rejects.toThrow(/nft -j list table ip6 kube-proxy failed: Error: No such file/);
    expect(() => parseNftTable('{"oops": 1}')).toThrow(/without an "nftables" array/);
  });
});

describe('nftables explain', () => {
  it('splits a ClusterIP between its endpoints by numgen, masquerading off-cluster sources and hairpin connections', () => {
    const fromPod = explain('10.244.1.100', '10.96.0.10', 80);
    expect(fromPod.servicePort).toBe('e2e/web:http');
    expect(fromPod.paths.map((p) => [p.endpoint, p.probability, p.masquerade, p.verdict])).toEqual([
      ['10.244.1.11:8080', 0.5, false, 'accept'],
      ['10.244.1.12:8080', 0.5, false, 'accept'],
    ]);
    expect(fromPod.paths[0]!.steps).toEqual(expect.arrayContaining(['nat-prerouting', 'services', 'service-5YTVDXPB-e2e/web/tcp/http', 'filter-forward', 'nat-postrouting']));
    expect(explain('192.168.50.2', '10.96.0.10', 80).paths.every((p) => p.masquerade)).toBe(true);
    // An endpoint reaching itself through the Service: masqueraded in postrouting (hairpin-connections).
    const hairpin = explain('10.244.1.11', '10.96.0.10', 80).paths;
    expect(hairpin.map((p) => [p.endpoint, p.masquerade])).toEqual([['10.244.1.11:8080', true], ['10.244.1.12:8080', false]]);
  });

  it('lets the share of an endpoint-map number that is missing go on undirected, as the kernel does', () => {
    const doc = JSON.parse(LISTING) as { nftables: { map?: { name: string; elem: unknown[][] } }[] };
    const map = doc.nftables.find((o) => o.map?.name === 'endpoints-0')!.map!;
    map.elem = map.elem.filter(([k]) => k !== 1); // web's second endpoint (10.244.1.12) is numbered 1
    const broken = parseNftTable(JSON.stringify(doc));
    const paths = nftablesExplain(broken, { src: '10.244.1.100', dst: '10.96.0.10', port: 80, protocol: 'TCP' }, [INSPECT_WORLD_NODE_IP], 'IPv4').paths;
    expect(paths.map((p) => [p.endpoint, p.probability])).toEqual([
      ['10.244.1.11:8080', 0.5],
      [undefined, 0.5],
    ]);
    expect(nftablesKernelView(broken, servicePorts, 'IPv4').servicePorts['e2e/web:http/TCP']!.endpoints).toEqual(['10.244.1.11:8080']);
  });

  it('sends external NodePort traffic with externalTrafficPolicy Local to the local endpoint, node traffic to any', () => {
    expect(explain('192.168.50.2', INSPECT_WORLD_NODE_IP, 30081).paths.map((p) => [p.endpoint, p.probability, p.masquerade])).toEqual([['10.244.1.11:8080', 1, false]]);
    expect(explain(INSPECT_WORLD_NODE_IP, INSPECT_WORLD_NODE_IP, 30081).paths.map((p) => [p.endpoint, p.probability, p.masquerade])).toEqual([
      ['10.244.1.11:8080', 0.5, true],
      ['10.244.2.5:8080', 0.5, true],
    ]);
  });

  it('names the reason of a reject or drop: no endpoints, source ranges, a port the ClusterIP does not serve', () => {
    const empty = explain('10.244.1.100', '10.96.0.12', 80);
    expect(empty.paths).toEqual([expect.objectContaining({ verdict: 'reject', reason: 'no endpoints (no-endpoint-services e2e/empty:http)', probability: 1 })]);
    expect(empty.servicePort).toBe('e2e/empty:http');
    expect(explain('198.51.100.9', '203.0.113.10', 80).paths).toEqual([expect.objectContaining({ verdict: 'drop', reason: 'source not in loadBalancerSourceRanges (firewall-AQCUM7E5-e2e/lb/tcp/http)' })]);
    expect(explain('192.168.50.2', '203.0.113.10', 80).paths.map((p) => [p.endpoint, p.verdict])).toEqual([['10.244.1.12:8080', 'accept']]);
    expect(explain('10.244.1.100', '10.96.0.10', 81).paths).toEqual([expect.objectContaining({ verdict: 'reject', reason: 'no Service port at this ClusterIP' })]);
  });

  it('separates clients pinned by session affinity from the random split', () => {
    const sticky = explain('10.244.1.100', '10.96.0.14', 80);
    expect(sticky.paths.filter((p) => !p.affinity).map((p) => [p.endpoint, p.probability])).toEqual([['10.244.1.11:8080', 0.5], ['10.244.1.12:8080', 0.5]]);
    expect(sticky.paths.filter((p) => p.affinity).map((p) => p.endpoint).sort()).toEqual(['10.244.1.11:8080', '10.244.1.12:8080']);
  });
});
