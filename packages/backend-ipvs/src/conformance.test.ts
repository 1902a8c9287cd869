// The shared backend conformance suite, over the pretend node (an in-memory IPVS/ipset/iptables
// kernel answering the recording runner). The same suite runs inside the VM on a real kernel.

import { expect } from 'vitest';
import type { BackendContext } from '@kube-proxy-ts/core';
import { describeBackendConformance, testContext } from '@kube-proxy-ts/testing';
import factory from './index.js';
import { createFakeIpvsNode, type FakeIpvsNode } from './test-support/fake-ipvs-node.js';

const nodes = new WeakMap<object, FakeIpvsNode>();
const nodeOf = (ctx: BackendContext) => nodes.get(ctx.runner)!;

describeBackendConformance('ipvs', factory, {
  config: { clusterCIDR: '10.244.0.0/16' },
  context: () => {
    const fake = createFakeIpvsNode({ nodeIPs: ['192.168.50.1'] });
    nodes.set(fake.runner, fake);
    return testContext({ runner: fake.runner, node: { name: 'node1', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] } });
  },
  foreignState: {
    install(ctx) {
      nodeOf(ctx).addForeignService('TCP', '10.99.0.1', 80, ['10.99.1.1:80']);
      nodeOf(ctx).ipsets.set('OTHER-SET', { type: 'hash:ip', entries: new Set(['1.2.3.4']) });
    },
    verify(ctx) {
      const fake = nodeOf(ctx);
      expect([...fake.services.keys()]).toEqual(['TCP/10.99.0.1:80']);
      expect([...fake.ipsets.keys()]).toEqual(['OTHER-SET']);
      expect(fake.links.has('kube-ipvs0')).toBe(false);
    },
  },
});
