import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { servicePortDrift } from '@kube-proxy-ts/core';
import { parseIptablesSave } from '@kube-proxy-ts/netfilter';
import { createRecordingRunner, INSPECT_WORLD_NODE_IP, inspectWorld } from '@kube-proxy-ts/testing';
import { iptablesExplain, iptablesKernelView, saveTablesForInspection } from './kernel-view.js';

// iptables-save of a node namespace running the daemon on the inspect world (e2e/capture-inspect-samples.ts).
const DUMP = readFileSync(new URL('./testdata/inspect-world.iptables-save.txt', import.meta.url), 'utf8');
const tables = parseIptablesSave(DUMP);
const world = inspectWorld();
const servicePorts = Object.values(world).map((w) => w.servicePort);
const local = [INSPECT_WORLD_NODE_IP];
const explain = (src: string, dst: string, port: number) => iptablesExplain(tables, { src, dst, port, protocol: 'TCP' }, local, 'IPv4');

describe('iptables kernel view', () => {
  const view = iptablesKernelView(tables, servicePorts, 'IPv4');

  it('indexes the dump by service port: frontends, endpoints and blocks', () => {
    expect(view.servicePorts['e2e/web:http/TCP']).toMatchObject({ frontends: ['10.96.0.10:80/TCP'], endpoints: ['10.244.1.11:8080', '10.244.1.12:8080'], blocked: [] });
    expect(view.servicePorts['e2e/np:http/TCP']!.frontends).toEqual(['10.96.0.11:80/TCP', 'NodePort 30080/TCP']);
    expect(view.servicePorts['e2e/empty:http/TCP']).toMatchObject({ frontends: ['10.96.0.12:80/TCP'], endpoints: [], blocked: ['10.96.0.12:80/TCP reject: e2e/empty:http has no endpoints'] });
    expect(view.servicePorts['e2e/local:http/TCP']!.endpoints).toEqual(['10.244.1.11:8080', '10.244.2.5:8080']);
    expect(view.servicePorts['e2e/lb:http/TCP']!.frontends).toEqual(['10.96.0.15:80/TCP', '203.0.113.10:80/TCP', 'NodePort 30082/TCP']);
    expect(view.servicePorts['e2e/lb:http/TCP']!.blocked[0]).toMatch(/^203\.0\.113\.10:80\/TCP drop: e2e\/lb:http traffic not accepted/);
    expect(view.unowned).toEqual([]);
  });

  it('agrees with what a sync would program for every service port of the recorded node', () => {
    for (const { servicePort, endpoints } of Object.values(world)) {
      expect(servicePortDrift(servicePort, endpoints, { name: 'node1', zone: undefined }, view.servicePorts[servicePort.key]), servicePort.key).toBeUndefined();
    }
  });

  it('shows drift when the kernel lost an endpoint chain, and leftovers of services no longer wanted', () => {
    const edited = parseIptablesSave(DUMP.replace(/^-A KUBE-SVC-3UJ5LHXTPPWCHAVL .*-j KUBE-SEP-E2PTVQY7E6Q7HNO2\n/m, ''));
    const partial = iptablesKernelView(edited, servicePorts.filter((sp) => sp.name.name !== 'np'), 'IPv4');
    const drift = servicePortDrift(world.web!.servicePort, world.web!.endpoints, { name: 'node1', zone: undefined }, partial.servicePorts['e2e/web:http/TCP']);
    expect(drift?.missingEndpoints).toEqual(['10.244.1.12:8080']);
    // The endpoint chain no service chain reaches any more is a leftover too.
    expect(partial.unowned).toEqual(['nat KUBE-EXT-U5E5GMJ5THK5VMKL', 'nat KUBE-SEP-E2PTVQY7E6Q7HNO2', 'nat KUBE-SEP-EEXBSF23W46EN5IR', 'nat KUBE-SVC-U5E5GMJ5THK5VMKL']);
  });

  it('counts a node port\'s localhost rule (nfacct) as the same NodePort, and traces through it', () => {
    const withLocalhost = parseIptablesSave(
      DUMP.replace(
        '-A KUBE-NODEPORTS -p tcp -m comment --comment "e2e/np:http" -m tcp --dport 30080',
        '-A KUBE-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment "e2e/np:http" -m tcp --dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-U5E5GMJ5THK5VMKL\n$&',
      ),
    );
    expect(iptablesKernelView(withLocalhost, servicePorts, 'IPv4').servicePorts['e2e/np:http/TCP']!.frontends).toEqual(['10.96.0.11:80/TCP', 'NodePort 30080/TCP']);
    const viaLoopback = iptablesExplain(withLocalhost, { src: '127.0.0.1', dst: '127.0.0.1', port: 30080, protocol: 'TCP' }, local, 'IPv4');
    expect(viaLoopback.paths.map((p) => [p.endpoint, p.probability, p.masquerade])).toEqual([['10.244.1.13:8080', 1, true]]);
  });

  it('reads nat and filter with one iptables-save each, and says so when one fails', async () => {
    const runner = createRecordingRunner();
    runner.on('iptables-save', (args) => ({ code: 0, stdout: args.includes('nat') ? '*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n' : '*filter\nCOMMIT\n', stderr: '' }));
    const t = await saveTablesForInspection(runner, 'iptables-save', 1000);
    expect([...t.keys()]).toEqual(['nat', 'filter']);
    expect(runner.calls.map((c) => [c.command, ...c.args])).toEqual([['iptables-save', '-t', 'nat'], ['iptables-save', '-t', 'filter']]);
    const failing = createRecordingRunner().on('iptables-save', { code: 1, stderr: 'Permission denied' });
    await expect(saveTablesForInspection(failing, 'iptables-save', 1000)).rejects.toThrow(/iptables-save -t nat failed: Permission denied/);
  });
});

describe('iptables explain', () => {
  it('names the endpoints of a ClusterIP with their probabilities and the masquerade decision', () => {
    const fromPod = explain('10.244.1.100', '10.96.0.10', 80);
    expect(fromPod.servicePort).toBe('e2e/web:http');
    expect(fromPod.paths.map((p) => [p.endpoint, p.probability, p.masquerade, p.verdict])).toEqual([
      ['10.244.1.11:8080', 0.5, false, 'accept'],
      ['10.244.1.12:8080', 0.5, false, 'accept'],
    ]);
    expect(fromPod.paths[0]!.steps).toEqual(expect.arrayContaining(['PREROUTING', 'KUBE-SERVICES', 'KUBE-SVC-3UJ5LHXTPPWCHAVL', 'KUBE-SEP-KB62UD44NPHHG3TA']));
    // From outside the cluster CIDR: masqueraded.
    expect(explain('192.168.50.2', '10.96.0.10', 80).paths.every((p) => p.masquerade)).toBe(true);
  });

  it('follows a NodePort with externalTrafficPolicy Local to the local endpoint only, unless the client is on the node', () => {
    const external = explain('192.168.50.2', INSPECT_WORLD_NODE_IP, 30081);
    expect(external.paths.map((p) => [p.endpoint, p.probability, p.masquerade])).toEqual([['10.244.1.11:8080', 1, false]]);
    const fromNode = explain(INSPECT_WORLD_NODE_IP, INSPECT_WORLD_NODE_IP, 30081);
    expect(fromNode.paths.map((p) => [p.endpoint, p.probability, p.masquerade])).toEqual([
      ['10.244.1.11:8080', 0.5, true],
      ['10.244.2.5:8080', 0.5, true],
    ]);
  });

  it('explains a reject for lack of endpoints and a drop by loadBalancerSourceRanges', () => {
    const empty = explain('10.244.1.100', '10.96.0.12', 80);
    expect(empty.paths).toEqual([expect.objectContaining({ verdict: 'reject', reason: 'e2e/empty:http has no endpoints', probability: 1 })]);
    expect(empty.servicePort).toBe('e2e/empty:http');
    const outsider = explain('198.51.100.9', '203.0.113.10', 80);
    expect(outsider.paths).toEqual([expect.objectContaining({ verdict: 'drop', reason: expect.stringMatching(/e2e\/lb:http traffic not accepted/) })]);
    expect(explain('192.168.50.2', '203.0.113.10', 80).paths.map((p) => [p.endpoint, p.verdict])).toEqual([['10.244.1.12:8080', 'accept']]);
  });

  it('separates pinned clients (session affinity) from the random split of new ones', () => {
    const sticky = explain('10.244.1.100', '10.96.0.14', 80);
    const fresh = sticky.paths.filter((p) => !p.affinity);
    expect(fresh.map((p) => [p.endpoint, p.probability])).toEqual([['10.244.1.11:8080', 0.5], ['10.244.1.12:8080', 0.5]]);
    expect(sticky.paths.filter((p) => p.affinity).map((p) => p.endpoint).sort()).toEqual(['10.244.1.11:8080', '10.244.1.12:8080']);
  });

  it('leaves a packet to no service alone', () => {
    const r = explain('10.244.1.100', '10.96.0.99', 80);
    expect(r.servicePort).toBeUndefined();
    expect(r.paths).toEqual([expect.objectContaining({ verdict: 'accept', probability: 1 })]);
    expect(r.paths[0]!.endpoint).toBeUndefined();
  });
});
