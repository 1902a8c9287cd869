import { describe, expect, it } from 'vitest';
import { servicePortDrift } from '@kube-proxy-ts/core';
import { parseIpvsadmList } from '@kube-proxy-ts/netfilter';
import { INSPECT_WORLD_NODE_IP, inspectWorld } from '@kube-proxy-ts/testing';
import { ipvsExplain, ipvsKernelView } from './kernel-view.js';

// The inspect world in IPVS mode, in `ipvsadm -Ln` format (ipvsadm(8)): virtual servers at each
// ClusterIP and LB IP, node ports at the node IP, weight 1 per endpoint, persistence for affinity.
// 10.244.1.13 in web is a terminating endpoint left at weight 0 while its connections drain.
const LISTING = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.10:80 rr
  -> 10.244.1.11:8080             Masq    1      0          0
  -> 10.244.1.12:8080             Masq    1      0          0
  -> 10.244.1.13:8080             Masq    0      2          0
TCP  10.96.0.11:80 rr
  -> 10.244.1.13:8080             Masq    1      0          0
TCP  10.96.0.12:80 rr
TCP  10.96.0.13:80 rr
  -> 10.244.1.11:8080             Masq    1      0          0
  -> 10.244.2.5:8080              Masq    1      0          0
TCP  10.96.0.14:80 rr persistent 60
  -> 10.244.1.11:8080             Masq    1      0          0
  -> 10.244.1.12:8080             Masq    1      0          0
TCP  10.96.0.15:80 rr
  -> 10.244.1.12:8080             Masq    1      0          0
TCP  192.168.50.1:30080 rr
  -> 10.244.1.13:8080             Masq    1      0          0
TCP  192.168.50.1:30081 rr
  -> 10.244.1.11:8080             Masq    1      0          0
TCP  192.168.50.1:30082 rr
  -> 10.244.1.12:8080             Masq    1      0          0
TCP  203.0.113.10:80 rr
  -> 10.244.1.12:8080             Masq    1      0          0
TCP  10.96.0.99:443 rr
  -> 10.244.9.9:8443              Masq    1      0          0
`;
const listing = parseIpvsadmList(LISTING);
const world = inspectWorld();
const servicePorts = Object.values(world).map((w) => w.servicePort);
const explain = (src: string, dst: string, port: number) => ipvsExplain(listing, { src, dst, port, protocol: 'TCP' }, 'IPv4');

describe('IPVS kernel view', () => {
  const view = ipvsKernelView(listing, servicePorts, 'IPv4');

  it('gives each service port its virtual servers, node ports included, and their weighted real servers', () => {
    expect(view.servicePorts['e2e/web:http/TCP']).toMatchObject({ frontends: ['10.96.0.10:80/TCP'], endpoints: ['10.244.1.11:8080', '10.244.1.12:8080'] });
    expect(view.servicePorts['e2e/local:http/TCP']!.frontends).toEqual(['10.96.0.13:80/TCP', 'NodePort 30081/TCP']);
    // The node port keeps only the local endpoint (externalTrafficPolicy Local): the union is still both.
    expect(view.servicePorts['e2e/local:http/TCP']!.endpoints).toEqual(['10.244.1.11:8080', '10.244.2.5:8080']);
    expect(view.servicePorts['e2e/empty:http/TCP']!.blocked).toEqual(['10.96.0.12:80/TCP drop: virtual server TCP/10.96.0.12:80 (rr) has no real server with a weight']);
    expect(view.servicePorts['e2e/lb:http/TCP']!.frontends).toEqual(['10.96.0.15:80/TCP', '203.0.113.10:80/TCP', 'NodePort 30082/TCP']);
    expect(view.unowned).toEqual(['virtual server TCP/10.96.0.99:443 (rr)']);
  });

  it('agrees with what a sync would program, and shows a lost real server as drift', () => {
    for (const { servicePort, endpoints } of Object.values(world)) {
      expect(servicePortDrift(servicePort, endpoints, { name: 'node1', zone: undefined }, view.servicePorts[servicePort.key]), servicePort.key).toBeUndefined();
    }
    const lost = ipvsKernelView(parseIpvsadmList(LISTING.replace('  -> 10.244.1.12:8080             Masq    1      0          0\n  -> 10.244.1.13', '  -> 10.244.1.13')), servicePorts, 'IPv4');
    expect(servicePortDrift(world.web!.servicePort, world.web!.endpoints, { name: 'node1', zone: undefined }, lost.servicePorts['e2e/web:http/TCP'])?.missingEndpoints).toEqual(['10.244.1.12:8080']);
  });
});

describe('IPVS explain', () => {
  it('looks the virtual server up and shares connections by weight, leaving draining endpoints out', () => {
    const r = explain('10.244.1.100', '10.96.0.10', 80);
    expect(r.paths.map((p) => [p.endpoint, p.probability, p.verdict])).toEqual([['10.244.1.11:8080', 0.5, 'accept'], ['10.244.1.12:8080', 0.5, 'accept']]);
    expect(r.paths[0]!.steps).toEqual(['virtual server TCP/10.96.0.10:80 (rr)']);
    expect(explain('10.244.1.100', INSPECT_WORLD_NODE_IP, 30081).paths.map((p) => p.endpoint)).toEqual(['10.244.1.11:8080']);
    expect(explain('10.244.1.11', '10.96.0.10', 80).paths.find((p) => p.endpoint === '10.244.1.11:8080')!.masquerade).toBe(true);
  });

  it('says why a packet goes nowhere: no real server, or no virtual server', () => {
    expect(explain('10.244.1.100', '10.96.0.12', 80).paths).toEqual([expect.objectContaining({ verdict: 'drop', reason: expect.stringMatching(/^no endpoints/) })]);
    expect(explain('10.244.1.100', '10.96.0.10', 81).paths).toEqual([expect.objectContaining({ verdict: 'accept', reason: expect.stringMatching(/^not a service address and port/) })]);
    expect(explain('10.244.1.100', '10.96.0.14', 80).paths[0]!.reason).toMatch(/persistent: a client returning within 60s/);
  });
});
