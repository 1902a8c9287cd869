// IPVS mode with the longest names the API allows (63-character namespace and Service name,
// 15-character port name). Its payloads carry addresses, ports and upstream's fixed set names and
// comments, never a Service's name, so no length limit of ipvsadm, ipset or iptables is near.
// (The IPVS kernel module is only in the VM suite; this checks what would be written there.)

import { describe, expect, it } from 'vitest';
import { emptyChangeSet, type ProxyConfig } from '@kube-proxy-ts/core';
import { COMMENT_MAX_BYTES } from '@kube-proxy-ts/netfilter';
import { endpointSlice, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { ipvsBackendFactory } from './backend.js';
import { createFakeIpvsNode } from './test-support/fake-ipvs-node.js';
import { proxyState } from './test-support/state.js';

const NS = `n${'s'.repeat(62)}`;
const NAME = `s${'v'.repeat(62)}`;
const PORT = `p${'o'.repeat(14)}`;

describe('ipvs backend: the longest valid names', () => {
  it('programs services with and without endpoints; no payload line carries a name or an over-long comment', async () => {
    const fake = createFakeIpvsNode();
    const ctx = testContext({ runner: fake.runner, node: { name: 'node1', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] } });
    const backend = ipvsBackendFactory({ ipFamily: 'IPv4', config: proxyConfig() as ProxyConfig });
    await backend.start(ctx);
    const state = proxyState({
      services: [
        service(NS, NAME, {
          type: 'LoadBalancer',
          clusterIP: '10.96.0.10',
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 32000,
          loadBalancerIngress: ['192.168.60.10'],
          loadBalancerSourceRanges: ['10.0.0.0/8'],
          ports: [{ name: PORT, port: 80, targetPort: 8080, nodePort: 30080 }],
        }),
        service(NS, `${NAME.slice(0, 62)}e`, { clusterIP: '10.96.0.11', ports: [{ name: PORT, port: 80 }] }),
      ],
      slices: [endpointSlice(NS, NAME, { name: `${NAME}-abcde`, endpoints: [{ ip: '10.244.1.11', nodeName: 'node1' }], ports: [{ name: PORT, port: 8080 }] })],
    });
    expect(state.services.size).toBe(2);
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.error?.message).toBeUndefined();
    expect(fake.runner.stdinsTo('ipvsadm').join('')).toContain('-a -t 10.96.0.10:80 -r 10.244.1.11:8080 -m -w 1');
    const payloads = ['ipvsadm', 'ipset', 'iptables-restore'].flatMap((c) => fake.runner.stdinsTo(c));
    expect(payloads.length).toBeGreaterThan(2);
    for (const line of payloads.join('\n').split('\n')) {
      expect(line).not.toContain(NAME.slice(0, 20));
      const comment = /--comment ("(?:[^"\\]|\\.)*"|\S+)/.exec(line)?.[1];
      if (comment) expect(Buffer.byteLength(comment)).toBeLessThanOrEqual(COMMENT_MAX_BYTES.iptables + 2);
    }
  });
});
