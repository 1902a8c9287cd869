// Which series the IPVS backend records: the iptables-restore failures it shares with iptables
// mode (defined once, in netfilter), and not the daemon's no-local-endpoints gauge.

import { describe, expect, it } from 'vitest';
import { emptyChangeSet, type ProxyConfig } from '@kube-proxy-ts/core';
import { endpointSlice, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { ipvsBackendFactory } from './backend.js';
import { createFakeIpvsNode } from './test-support/fake-ipvs-node.js';
import { proxyState } from './test-support/state.js';

async function setup() {
  const fake = createFakeIpvsNode();
  const ctx = testContext({ runner: fake.runner, node: { name: 'node1', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] } });
  const backend = ipvsBackendFactory({ ipFamily: 'IPv4', config: proxyConfig() as ProxyConfig });
  await backend.start(ctx);
  return { fake, ctx, backend };
}

// externalTrafficPolicy Local, its only endpoint on another node.
const remoteOnly = () =>
  proxyState({
    services: [service('ns1', 'web', { type: 'LoadBalancer', clusterIP: '10.96.0.10', externalTrafficPolicy: 'Local', ports: [{ name: 'p80', port: 80, protocol: 'TCP', nodePort: 30080 }] })],
    slices: [endpointSlice('ns1', 'web', { name: 'web-1', endpoints: [{ ip: '10.244.2.12', nodeName: 'node2' }] })],
  });

describe('ipvs backend metrics', () => {
  it('leaves sync_proxy_rules_no_local_endpoints_total to the daemon, which counts it in every mode', async () => {
    const { ctx, backend } = await setup();
    const r = await backend.sync(remoteOnly(), emptyChangeSet());
    expect(r.error?.message).toBeUndefined();
    expect(ctx.metrics.getSingleMetric('kubeproxy_sync_proxy_rules_no_local_endpoints_total')).toBeUndefined();
  });

  it('counts a failed iptables-restore in the series iptables mode counts it in', async () => {
    const { fake, ctx, backend } = await setup();
    fake.runner.once('iptables-nft-restore', { code: 1, stderr: 'iptables-nft-restore: line 3 failed' });
    const r = await backend.sync(remoteOnly(), emptyChangeSet());
    expect(r.ok).toBe(false);
    const text = await ctx.metrics.metrics();
    expect(text).toContain('# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total Cumulative proxy iptables restore failures');
    expect(text).toContain('kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv4"} 1');
  });
});
