// The backend conformance suite, with a recording runner for the rules and real listeners on
// 127.0.0.1 (ephemeral ports; inspect() shows listener ids in place of port numbers).

import { describeBackendConformance, nodeInfo, testContext } from '@kube-proxy-ts/testing';
import type { BackendFactory } from '@kube-proxy-ts/core';
import { UserspaceBackend } from './backend.js';

const factory: BackendFactory = (options) => new UserspaceBackend({ ...options, raiseFileLimit: false });
const node = nodeInfo({ name: 'node1', zone: 'zone-a', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] });

describeBackendConformance(factory, {
  config: { bindAddress: '127.0.0.1' },
  context: () => testContext({ node }),
});

describeBackendConformance(factory, {
  ipFamily: 'IPv6',
  config: { bindAddress: '::1' },
  context: () => testContext({ node: nodeInfo({ name: 'node1', ipFamily: 'IPv6', addresses: ['fd00:192:168:50::1'] }) }),
  seeds: [7],
});
