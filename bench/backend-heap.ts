// Retained heap of a kernel backend at N ClusterIP Services x 10 endpoints, after a full sync and
// after a partial one (one endpoint changed), with a runner that answers every command with
// success: no kernel is touched, no sandbox is needed. Then, for the iptables backend, what each of
// its records alone keeps alive (dropped one after the other).
//
// usage (from bench/): node --expose-gc --conditions=@kube-proxy-ts/source --import tsx backend-heap.ts
//                        [--mode iptables|nftables] [--size 10000]

import type { Backend, CommandRunner, Logger, ProxyState } from '@kube-proxy-ts/core';
import { ProxyStateTracker } from '@kube-proxy-ts/core';
import { IptablesBackend } from '@kube-proxy-ts/backend-iptables';
import { NftablesBackend } from '@kube-proxy-ts/backend-nftables';
import { endpointSlice, node, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const mode = arg('mode', 'iptables');
const size = Number(arg('size', '10000'));
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const heap = () => {
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
};
const mib = (b: number) => Number((b / 1048576).toFixed(1));

const NODE = 'heap-node';
const NODE_IP = '192.168.77.2';
const runner: CommandRunner = {
  async run(command, args) {
    if (args[0] === '--version') return { code: 0, stdout: 'iptables v1.8.9 (nf_tables)\n', stderr: '' };
    if (command === 'nft' && args.includes('-j')) return { code: 0, stdout: '{"nftables": []}', stderr: '' };
    if (command === 'ip') return { code: 0, stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: NODE_IP }] }]), stderr: '' };
    return { code: 0, stdout: '', stderr: '' };
  },
};
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Logger;
const endpointsOf = (i: number) => Array.from({ length: 10 }, (_, j) => `10.${160 + ((i * 10 + j + 1) >> 16)}.${((i * 10 + j + 1) >> 8) & 255}.${(i * 10 + j + 1) & 255}`);
const slice = (i: number, endpoints: string[]) => endpointSlice('bench', `svc${i}`, { name: `svc${i}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] });

// Everything measured is held here, so that dropping a reference frees exactly what it kept.
const held: { tracker?: ProxyStateTracker; state?: ProxyState; backend?: Backend } = {};
const out: Record<string, number | string> = { mode, services: size };

const h0 = heap();
held.tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
held.tracker.onNodeAdd(node(NODE, { addresses: [NODE_IP], podCIDRs: ['10.244.1.0/24'] }));
held.tracker.onNodeSynced();
held.tracker.onServicesSynced();
held.tracker.onEndpointSlicesSynced();
for (let i = 0; i < size; i++) {
  held.tracker.onServiceAdd(service('bench', `svc${i}`, { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  held.tracker.onEndpointSliceAdd(slice(i, endpointsOf(i)));
}
let checkpoint = held.tracker.checkpoint();
held.state = checkpoint.state;
const h1 = heap();
out.trackerAndStateMiB = mib(h1 - h0);

const config = proxyConfig({ clusterCIDR: '10.244.0.0/16' });
held.backend = mode === 'nftables' ? new NftablesBackend({ ipFamily: 'IPv4', config }) : new IptablesBackend({ ipFamily: 'IPv4', config, flavour: 'nft' });
await held.backend.start({ ...testContext({ logger: silent, node: { name: NODE, addresses: [NODE_IP] } }), runner });
const full = await held.backend.sync(checkpoint.state, checkpoint.changes);
if (!full.ok || !full.full) throw new Error(`full sync: ${full.error?.message}`);
out.backendAfterFullSyncMiB = mib(heap() - h1);

held.tracker.onEndpointSliceUpdate(slice(5, endpointsOf(5)), slice(5, endpointsOf(5).slice(0, 9).concat('10.250.0.1')));
checkpoint = held.tracker.checkpoint();
held.state = checkpoint.state;
const partial = await held.backend.sync(checkpoint.state, checkpoint.changes);
if (!partial.ok || partial.full) throw new Error(`partial sync: ${partial.error?.message}`);
out.backendAfterPartialSyncMiB = mib(heap() - h1);

if (mode === 'iptables') {
  const records = held.backend as unknown as Record<string, unknown>;
  for (const field of ['payloads', 'model', 'previousRules']) {
    const before = heap();
    records[field] = field === 'payloads' ? [] : undefined;
    out[`${field}MiB`] = mib(before - heap());
  }
}
await held.backend.stop?.();
console.log(JSON.stringify(out));
