// Probe: builds a kube-proxy nftables table of N ClusterIP services x 10 endpoints with the
// backend, in a network namespace of its own, then times one-endpoint-change syncs and a few
// single nft transactions against it. A tool for finding where a transaction's time goes.
// The namespace is deleted at the end unless --keep is given (its name is printed).
//
// usage (root, from bench/):
//   node --conditions=@kube-proxy-ts/source --import tsx nftables-probe.ts --size 1000 [--per-tx 1000]
//        [--changes 4] [--no-probes] [--per-hook] [--keep] [--dump DIR]

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { ProxyStateTracker, realClock } from '@kube-proxy-ts/core';
import { NftablesBackend } from '@kube-proxy-ts/backend-nftables';
import { createExecRunner } from '@kube-proxy-ts/netfilter';
import { endpointSlice, node, nodeInfo, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const size = Number(arg('size', '1000'));
const keep = process.argv.includes('--keep');
const dump = arg('dump', '');
const perTx = Number(arg('per-tx', '250'));
const changes = Number(arg('changes', '4'));
const ns = `kpts-nftperf-${randomBytes(3).toString('hex')}`;
const NODE = 'probe-node';
const NODE_IP = '192.168.77.2';
const clusterIP = (i: number) => `10.96.${i >> 8}.${i & 255}`;
const fakeEndpoint = (k: number) => `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

function nft(script: string): number {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script, timeout: 60_000 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`nft failed: ${r.stderr?.toString()}\n${script.slice(0, 500)}`);
  return ms;
}

async function main() {
  execFileSync('ip', ['netns', 'add', ns]);
  console.log(`netns ${ns}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  try {
    const runner = createExecRunner({ netns: ns });
    const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
    tracker.onNodeAdd(node(NODE, { addresses: [NODE_IP], podCIDRs: ['10.244.1.0/24'] }));
    tracker.onNodeSynced();
    tracker.onServicesSynced();
    tracker.onEndpointSlicesSynced();
    const slices = [];
    for (let i = 0; i < size; i++) {
      tracker.onServiceAdd(service('bench', `svc${i}`, { clusterIP: clusterIP(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
      const endpoints = Array.from({ length: 10 }, (_, j) => fakeEndpoint(i * 10 + j + 1));
      const slice = endpointSlice('bench', `svc${i}`, { name: `svc${i}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] });
      slices.push(slice);
      tracker.onEndpointSliceAdd(slice);
    }
    const backend = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.244.0.0/16' }), nftTimeoutMs: 60_000, servicesPerTransaction: perTx });
    await backend.start(testContext({ runner, clock: realClock, node: nodeInfo({ name: NODE, addresses: [NODE_IP], podCIDRs: ['10.244.1.0/24'] }) }));
    const cp = tracker.checkpoint();
    let t0 = performance.now();
    const full = await backend.sync(cp.state, cp.changes);
    if (!full.ok) throw full.error;
    console.log(`full sync ${size}: ${(performance.now() - t0).toFixed(0)} ms ${JSON.stringify(full.stats)}`);

    const v = Math.floor(size / 2);
    const victim = slices[v]!;
    for (let k = 0; k < changes; k++) {
      const eps = (victim.endpoints ?? []).map((e) => e.addresses[0]!);
      const next = endpointSlice('bench', `svc${v}`, { name: `svc${v}-1`, endpoints: k % 2 === 0 ? [...eps, `10.250.0.${k + 1}`] : eps, ports: [{ name: 'http', port: 8080 }] });
      tracker.onEndpointSliceUpdate(victim, next);
      const c = tracker.checkpoint();
      t0 = performance.now();
      const r = await backend.sync(c.state, c.changes);
      if (!r.ok) throw r.error;
      console.log(`one-endpoint change: ${(performance.now() - t0).toFixed(0)} ms ${JSON.stringify(r.stats)}`);
      if (dump) {
        mkdirSync(dump, { recursive: true });
        writeFileSync(`${dump}/change-${k}.nft`, backend.lastTransactions.join('\n---\n'));
      }
      await new Promise((r) => setTimeout(r, 1200)); // lets the stale-chain deletion run
    }
    if (process.argv.includes('--per-hook')) {
      // The last change's transaction again (adding what is there changes nothing), 9 times, then
      // with nat-output's jump to services deleted: the commit validates the chains once per hook.
      const change = backend.lastTransactions[0]!;
      const timesOf = () => Array.from({ length: 9 }, () => nft(change)).sort((a, b) => a - b).map((t) => t.toFixed(0)).join(' ');
      console.log(`change transaction, both hooks: ${timesOf()} ms`);
      const listing = execFileSync('ip', ['netns', 'exec', ns, 'nft', '-a', 'list', 'chain', 'ip', 'kube-proxy', 'nat-output'], { encoding: 'utf8' });
      const handle = /jump services # handle (\d+)/.exec(listing)?.[1];
      if (!handle) throw new Error(`no jump services in nat-output:\n${listing}`);
      nft(`delete rule ip kube-proxy nat-output handle ${handle}\n`);
      console.log(`change transaction, prerouting only: ${timesOf()} ms`);
      nft('add rule ip kube-proxy nat-output jump services\n');
    }
    const probes: [string, string][] = [
      ['add element (set)', `add element ip kube-proxy cluster-ips { ${clusterIP(0)} }\n`],
      ['add chain only', `add chain ip kube-proxy probe-x\n`],
      ['add chain + rule', `add chain ip kube-proxy probe-y\nadd rule ip kube-proxy probe-y counter\n`],
      ['rule with jump', `add chain ip kube-proxy probe-z\nadd rule ip kube-proxy probe-z jump services\n`],
      ['flush chain', `flush chain ip kube-proxy probe-z\n`],
      ['delete+add chain', `delete chain ip kube-proxy probe-z\nadd chain ip kube-proxy probe-z\n`],
    ];
    for (const [name, script] of process.argv.includes('--no-probes') ? [] : probes) {
      const times = [0, 1, 2].map(() => nft(script));
      console.log(`${name}: ${times.map((t) => t.toFixed(0)).join(' / ')} ms`);
    }
    await backend.stop();
  } finally {
    if (!keep) execFileSync('ip', ['netns', 'del', ns]);
    else console.log(`kept netns ${ns}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
