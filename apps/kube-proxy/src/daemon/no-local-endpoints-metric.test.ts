// sync_proxy_rules_no_local_endpoints_total has one owner, the daemon: after each successful sync
// it counts, from the state the backend was given, the service ports whose Local traffic policy
// leaves them endpoints elsewhere but none on this node (the traffic the rules drop). Scraped here
// from the /metrics of a daemon running the real iptables backend against a recording runner.

import iptablesBackendFactory from '@kube-proxy-ts/backend-iptables';
import { defaultProxyConfig, ProxyStateTracker, realClock, type ProxyEventHandler } from '@kube-proxy-ts/core';
import { createRecordingRunner, createTestLogger, endpointSlice, node, service } from '@kube-proxy-ts/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from './daemon.js';
import { createRegistry } from './metrics.js';

const until = async (cond: () => boolean | Promise<boolean>, ms = 5000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

async function iptablesDaemon() {
  const runner = createRecordingRunner();
  let handler: ProxyEventHandler | undefined;
  const daemon = new Daemon({
    config: { ...defaultProxyConfig(), mode: 'iptables', healthzBindAddress: '127.0.0.1:0', metricsBindAddress: '127.0.0.1:0', minSyncPeriod: 0, syncPeriod: 60_000 },
    nodeName: 'node1',
    logger: createTestLogger(),
    registry: createRegistry(),
    runner,
    clock: realClock,
    loadFactory: async () => iptablesBackendFactory,
    createTracker: (ipFamily, nodeName) => new ProxyStateTracker({ ipFamily, nodeName }),
    startSource: (h) => {
      handler = h;
      return { stop: () => undefined };
    },
    checkRequirements: async () => [],
    families: ['IPv4'],
  });
  daemons.push(daemon);
  const started = daemon.start();
  await until(() => handler !== undefined);
  return { daemon, runner, started, h: handler! };
}

async function scrape(daemon: Daemon): Promise<string> {
  const a = daemon.metricsAddress;
  if (!a) throw new Error('no metrics server');
  return (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text();
}

function noLocal(text: string, policy: 'internal' | 'external'): number | undefined {
  const m = new RegExp(`^kubeproxy_sync_proxy_rules_no_local_endpoints_total\\{traffic_policy="${policy}",ip_family="IPv4"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

const lbLocal = (name: string, clusterIP: string, nodePort: number) =>
  service('ns1', name, { type: 'LoadBalancer', clusterIP, externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort }] });
const slice = (name: string, endpoints: Array<{ ip: string; nodeName: string }>) =>
  endpointSlice('ns1', name, { name: `${name}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] });

describe('kubeproxy_sync_proxy_rules_no_local_endpoints_total in iptables mode', () => {
  it('counts Local-policy service ports whose endpoints are all on other nodes, per sync', async () => {
    const { daemon, runner, started, h } = await iptablesDaemon();
    // Counted: external policy Local, its only endpoint on node2.
    h.onServiceAdd(lbLocal('remote', '10.96.0.10', 30010));
    h.onEndpointSliceAdd(slice('remote', [{ ip: '10.244.2.11', nodeName: 'node2' }]));
    // Counted: internal policy Local, its only endpoint on node2.
    h.onServiceAdd(service('ns1', 'internal', { clusterIP: '10.96.0.11', internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }));
    h.onEndpointSliceAdd(slice('internal', [{ ip: '10.244.2.12', nodeName: 'node2' }]));
    // Not counted: a local endpoint exists.
    h.onServiceAdd(lbLocal('here', '10.96.0.12', 30012));
    h.onEndpointSliceAdd(slice('here', [{ ip: '10.244.1.13', nodeName: 'node1' }, { ip: '10.244.2.13', nodeName: 'node2' }]));
    // Not counted: no endpoints anywhere (rejected, not dropped for lack of local ones).
    h.onServiceAdd(lbLocal('empty', '10.96.0.13', 30013));
    h.onServicesSynced();
    h.onEndpointSlicesSynced();
    h.onNodeAdd(node('node1', { addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] }));
    h.onNodeSynced();
    await started;

    await until(async () => noLocal(await scrape(daemon), 'external') !== undefined);
    let text = await scrape(daemon);
    expect(noLocal(text, 'external')).toBe(1);
    expect(noLocal(text, 'internal')).toBe(1);
    // The rules agree: the counted ports are the ones the backend drops for lack of local endpoints.
    const payload = runner.stdinsTo('iptables-restore').join('') + runner.stdinsTo('iptables-nft-restore').join('') + runner.stdinsTo('iptables-legacy-restore').join('');
    expect(payload).toContain('ns1/remote:http has no local endpoints');
    expect(payload).toContain('ns1/internal:http has no local endpoints');
    expect(payload).not.toContain('ns1/here:http has no local endpoints');

    // The next sync recounts: an endpoint of "remote" comes to this node.
    h.onEndpointSliceUpdate(slice('remote', [{ ip: '10.244.2.11', nodeName: 'node2' }]), slice('remote', [{ ip: '10.244.1.11', nodeName: 'node1' }]));
    await until(async () => noLocal(await scrape(daemon), 'external') === 0);
    text = await scrape(daemon);
    expect(noLocal(text, 'internal')).toBe(1);
    // One series per policy and family: no second writer adds its own.
    expect(text.match(/^kubeproxy_sync_proxy_rules_no_local_endpoints_total\{/gm)).toHaveLength(2);
  });
});
