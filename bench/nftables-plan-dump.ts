// Writes the transactions a full sync of N ClusterIP services x 10 endpoints would send (dry run),
// one file per transaction, for timing them by hand against a table in a scratch namespace.
// usage: node --conditions=@kube-proxy-ts/source --import tsx nftables-plan-dump.ts --size 1000 --ns other --out DIR

import { mkdirSync, writeFileSync } from 'node:fs';
import { ProxyStateTracker } from '@kube-proxy-ts/core';
import { NftablesBackend } from '@kube-proxy-ts/backend-nftables';
import { endpointSlice, node, proxyConfig, service } from '@kube-proxy-ts/testing';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const size = Number(arg('size', '1000'));
const nsName = arg('ns', 'bench');
const out = arg('out', '/tmp/nft-plan');
const base = Number(arg('base', '0'));
const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'probe-node' });
tracker.onNodeAdd(node('probe-node', { addresses: ['192.168.77.2'], podCIDRs: ['10.244.1.0/24'] }));
tracker.onNodeSynced();
tracker.onServicesSynced();
tracker.onEndpointSlicesSynced();
for (let n = 0; n < size; n++) {
  const i = n + base;
  tracker.onServiceAdd(service(nsName, `svc${i}`, { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  const endpoints = Array.from({ length: 10 }, (_, j) => `10.${160 + ((i * 10 + j + 1) >> 16)}.${((i * 10 + j + 1) >> 8) & 255}.${(i * 10 + j + 1) & 255}`);
  tracker.onEndpointSliceAdd(endpointSlice(nsName, `svc${i}`, { name: `svc${i}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] }));
}
const backend = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.244.0.0/16' }), servicesPerTransaction: Number(arg('per-tx', '1000')) });
const { state, changes } = tracker.checkpoint();
const plan = backend.plan(state, changes, null);
mkdirSync(out, { recursive: true });
plan.transactions.forEach((t, i) => writeFileSync(`${out}/tx-${i}.nft`, t.toString()));
console.log(`${plan.transactions.length} transactions in ${out}`);
