import { describe, expect, it } from 'vitest';
import { emptyChangeSet, type ProxyConfig, type ProxyState } from '@kube-proxy-ts/core';
import { endpointSlice, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { ipvsBackendFactory } from './backend.js';
import { createFakeIpvsNode } from './test-support/fake-ipvs-node.js';
import { proxyState } from './test-support/state.js';

const DRIFT = 'kubeproxy_sync_proxy_rules_drift_detected_total';
const LINE = 'IPVS virtual servers or kube-ipvs0 addresses removed outside kube-proxy; restoring';

async function setUp() {
  const fake = createFakeIpvsNode();
  const ctx = testContext({ runner: fake.runner, node: { name: 'node1', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] } });
  const backend = ipvsBackendFactory({ ipFamily: 'IPv4', config: proxyConfig({}) as ProxyConfig });
  await backend.start(ctx);
  const sync = async (state: ProxyState) => {
    const r = await backend.sync(state, emptyChangeSet());
    expect(r.error?.message).toBeUndefined();
  };
  const drift = async () => (await ctx.metrics.getSingleMetric(DRIFT)?.get())?.values.find((v) => v.labels.ip_family === 'IPv4')?.value;
  const lines = () => ctx.logger.entries.filter((e) => e.msg === LINE);
  return { fake, ctx, backend, sync, drift, lines };
}

const web = service('ns1', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] });
const api = service('ns1', 'api', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }] });
const webEndpoints = endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.11', '10.244.2.12'], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] });
const world = () => proxyState({ services: [web, api], slices: [webEndpoints] });

describe('ipvs backend: what is removed by hand comes back at the next sync', () => {
  it('a virtual server and a kube-ipvs0 address deleted (ipvsadm -D, ip addr del): restored, logged once, counted', async () => {
    const t = await setUp();
    await t.sync(world());
    expect(await t.drift()).toBe(0);
    const before = [...t.fake.services.keys()].sort();
    const realServers = [...t.fake.services.get('TCP/10.96.0.10:80')!.realServers.keys()].sort();

    t.fake.services.delete('TCP/10.96.0.10:80');
    t.fake.links.set('kube-ipvs0', t.fake.links.get('kube-ipvs0')!.filter((a) => a.local !== '10.96.0.20'));
    await t.sync(world());
    expect([...t.fake.services.keys()].sort()).toEqual(before);
    expect([...t.fake.services.get('TCP/10.96.0.10:80')!.realServers.keys()].sort()).toEqual(realServers);
    expect(t.fake.links.get('kube-ipvs0')!.map((a) => a.local).sort()).toEqual(['10.96.0.10', '10.96.0.20']);
    expect(t.lines()).toHaveLength(1);
    expect(t.lines()[0]!.fields).toMatchObject({ virtualServices: 1, addresses: 1, dummyDeviceDeleted: false });
    expect(await t.drift()).toBe(1);

    await t.sync(world());
    expect(t.lines()).toHaveLength(1);
    expect(await t.drift()).toBe(1);
  });

  it('kube-ipvs0 deleted (ip link del): the device and its addresses come back', async () => {
    const t = await setUp();
    await t.sync(world());
    t.fake.links.delete('kube-ipvs0');
    await t.sync(world());
    expect(t.fake.links.get('kube-ipvs0')!.map((a) => a.local).sort()).toEqual(['10.96.0.10', '10.96.0.20']);
    expect(t.lines()[0]!.fields).toMatchObject({ addresses: 2, dummyDeviceDeleted: true });
    expect(await t.drift()).toBe(1);
  });

  it('what the proxy removed itself, after a Service deletion, a failed sync or a cleanup, is no drift', async () => {
    const t = await setUp();
    await t.sync(world());
    await t.sync(proxyState({ services: [web], slices: [webEndpoints] }));
    expect(t.fake.services.has('TCP/10.96.0.20:80')).toBe(false);
    await t.sync(proxyState({ services: [web], slices: [webEndpoints] }));

    // A sync that fails after removing a virtual server: the next one does not know what stayed.
    t.fake.runner.once('ipset', { code: 1, stderr: 'ipset v7.17: Error in line 1: Kernel error' }, (a) => a[0] === 'restore');
    const failed = await t.backend.sync(world(), emptyChangeSet());
    expect(failed.ok).toBe(false);
    t.fake.services.clear();
    await t.sync(world());

    await t.backend.cleanup(t.ctx);
    await t.sync(world());
    expect(t.lines()).toHaveLength(0);
    expect(await t.drift()).toBe(0);
  });
});
