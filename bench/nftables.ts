// nftables backend benchmark, in a network-namespace sandbox (never the host's namespace):
//  1. control plane: full sync into an empty table, then a sync after one endpoint change, and a
//     restarted daemon's first sync into the full table, at 1k / 5k / 10k services x 10
//     endpoints, growing step by step and stopping when a step exceeds 60 s; the iptables
//     backend's full sync of the same services in the same run, and this process's RSS;
//  2. data plane: TCP connect time (first packet of a new connection through the NAT rules) to
//     a ClusterIP at 100 / 1k / 10k services, for the iptables and nftables backends side by side,
//     in rounds (--rounds) that take turns, each figure the median over the rounds.
//
// usage: node --import tsx nftables.ts [--sizes 1000,5000,10000] [--latency-sizes 100,1000,10000]
//                                       [--rounds 3] [--no-iptables] [--per-tx N] [--out results/nftables.md]

import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { cpus, loadavg, release } from 'node:os';
import { execFileSync } from 'node:child_process';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { ProxyStateTracker, realClock, type Backend, type BackendFactory, type ChangeSet, type ProxyState } from '@kube-proxy-ts/core';
import { NftablesBackend } from '@kube-proxy-ts/backend-nftables';
import iptablesBackendFactory from '@kube-proxy-ts/backend-iptables';
import { createSandbox, endpointSlice, node, nodeInfo, proxyConfig, service, testContext, type Sandbox } from '@kube-proxy-ts/testing';

const STEP_LIMIT_MS = 60_000;
const NODE = 'bench-node';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const sizes = arg('sizes', '1000,5000,10000').split(',').map(Number);
const latencySizes = arg('latency-sizes', '100,1000,10000').split(',').map(Number);
const withIptables = !process.argv.includes('--no-iptables');
/** Rounds of the data-plane measurement: a p50 moves with the machine from one minute to the next. */
const rounds = Number(arg('rounds', '3'));
/** Service ports per nft transaction; unset: the backend's default. */
const perTx = process.argv.includes('--per-tx') ? Number(arg('per-tx', '')) : undefined;
const out = resolve(import.meta.dirname, arg('out', 'results/nftables.md'));

const clusterIP = (i: number) => `10.96.${i >> 8}.${(i & 255) + 0}`;
const fakeEndpoint = (k: number) => `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

/** `count` ClusterIP services with `perService` endpoints each; the last one's endpoint is pod1. */
function world(sb: Sandbox, count: number, perService: number) {
  const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: NODE });
  tracker.onNodeAdd(node(NODE, { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }));
  tracker.onNodeSynced();
  tracker.onServicesSynced();
  tracker.onEndpointSlicesSynced();
  const slices: V1EndpointSlice[] = [];
  for (let i = 0; i < count; i++) {
    tracker.onServiceAdd(service('bench', `svc${i}`, { clusterIP: clusterIP(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    const endpoints = i === count - 1 ? [sb.pods[0]!.ip] : Array.from({ length: perService }, (_, j) => fakeEndpoint(i * perService + j + 1));
    const slice = endpointSlice('bench', `svc${i}`, { name: `svc${i}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] });
    slices.push(slice);
    tracker.onEndpointSliceAdd(slice);
  }
  return { tracker, slices, target: clusterIP(count - 1) };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

// Connections made first and not counted (JIT, caches), then the counted ones, in one process.
const CONNECT_SCRIPT = `
const net = require('node:net');
const [host, port, count, warm] = process.argv.slice(1);
const times = [];
function one(i) {
  if (i >= Number(warm) + Number(count)) {
    times.sort((a, b) => a - b);
    const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    console.log(JSON.stringify({ n: times.length, p50: q(0.5), p90: q(0.9), p99: q(0.99) }));
    return;
  }
  const t0 = process.hrtime.bigint();
  const s = net.connect(Number(port), host);
  s.setTimeout(3000, () => { console.error('timeout'); process.exit(1); });
  s.on('connect', () => {
    if (i >= Number(warm)) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    s.destroy();
    setImmediate(() => one(i + 1));
  });
  s.on('error', (e) => { console.error(String(e)); process.exit(1); });
}
one(0);
`;

interface Latency { n: number; p50: number; p90: number; p99: number }

const CONNECTIONS = 2000;
const WARM_UP = 200;

async function connectLatency(sb: Sandbox, host: string): Promise<Latency> {
  const stdout = await sb.execOk('client', [process.execPath, '-e', CONNECT_SCRIPT, host, '80', String(CONNECTIONS), String(WARM_UP)], { timeoutMs: 120_000 });
  return JSON.parse(stdout) as Latency;
}

/** The context of a backend in the sandbox's node namespace. */
const nodeContext = (sb: Sandbox) =>
  testContext({ runner: sb.runner('node'), clock: realClock, node: nodeInfo({ name: NODE, addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }) });

/** A started backend; `fresh` also removes what an earlier one left. */
async function startBackend(sb: Sandbox, make: () => Backend, fresh = true): Promise<Backend> {
  const backend = make();
  const ctx = nodeContext(sb);
  await backend.start(ctx);
  if (fresh) await backend.cleanup(ctx);
  return backend;
}

const config = () => proxyConfig({ clusterCIDR: '10.244.0.0/16' });
const makeNft = () => new NftablesBackend({ ipFamily: 'IPv4', config: config(), nftTimeoutMs: STEP_LIMIT_MS, ...(perTx ? { servicesPerTransaction: perTx } : {}) });
const makeIpt = () => (iptablesBackendFactory as BackendFactory)({ ipFamily: 'IPv4', config: config() });

async function sync(backend: Backend, state: ProxyState, changes: ChangeSet) {
  const [r, ms] = await timed(() => backend.sync(state, changes));
  if (!r.ok) throw new Error(`${backend.name} sync failed: ${r.error?.message.slice(0, 500)}`);
  return { ms, result: r };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

async function main() {
  const lines: string[] = [];
  const log = (s: string) => {
    console.log(s);
    lines.push(s);
  };
  const startedAt = new Date().toISOString();
  const sb = await createSandbox({ tag: 'nftb', pods: 1, ports: [8080] });
  try {
    log(`# nftables benchmark\n`);
    log(`Run ${startedAt} by \`bench/nftables.ts\` on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, kernel ${release()}, ${execFileSync('nft', ['--version']).toString().trim()}.`);
    log(`Load average at start (other work on the machine moves these numbers) ${loadavg().map((x) => x.toFixed(2)).join(' / ')}.`);
    const loadLine = () => `load average now ${loadavg().map((x) => x.toFixed(2)).join(' / ')}`;
    log(`Each step runs in the node namespace of a fresh sandbox, into an empty table, ${perTx ? `${perTx} service ports per transaction` : "transactions of the backend's default size"}; every nft call has a ${STEP_LIMIT_MS / 1000} s timeout and`);
    log(`the sizes grow step by step, stopping after a step slower than ${STEP_LIMIT_MS / 1000} s.\n`);

    log('## Control plane (nftables, 10 endpoints per service)\n');
    log('| services | full sync | iptables full sync | transactions | lines | one-endpoint change (median of 5) | min / max | no-op transaction | no-op that lists all chains | restarted daemon\'s full sync | RSS |');
    log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of sizes) {
      const w = world(sb, n, 10);
      const backend = await startBackend(sb, makeNft);
      const { state, changes } = w.tracker.checkpoint();
      const full = await sync(backend, state, changes);
      const partial: number[] = [];
      const victim = w.slices[Math.floor(n / 2)]!;
      for (let k = 0; k < 5; k++) {
        const eps = (victim.endpoints ?? []).map((e) => e.addresses[0]!);
        const next = endpointSlice('bench', `svc${Math.floor(n / 2)}`, {
          name: `svc${Math.floor(n / 2)}-1`,
          endpoints: k % 2 === 0 ? [...eps, `10.250.0.${k + 1}`] : eps,
          ports: [{ name: 'http', port: 8080 }],
        });
        w.tracker.onEndpointSliceUpdate(victim, next);
        const cp = w.tracker.checkpoint();
        const r = await sync(backend, cp.state, cp.changes);
        if (r.result.full) throw new Error('expected a partial sync');
        partial.push(r.ms);
      }
      // Two no-op transactions at this size (re-adding an existing element): in the block form
      // the backend writes, which needs only nft's table cache, and as `add element`, for which
      // nft 1.0.6 first reads every chain of the family (the kernel's chain dump is O(chains^2)).
      const noop = async (script: string) => {
        const times: number[] = [];
        for (let k = 0; k < 3; k++) {
          const [r, ms] = await timed(() => sb.exec('node', ['nft', '-f', '-'], { stdin: script, timeoutMs: STEP_LIMIT_MS }));
          if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
          times.push(ms);
        }
        return median(times);
      };
      const floor = await noop(`add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = { ${clusterIP(0)} } ; }\n`);
      const listing = await noop(`add element ip kube-proxy cluster-ips { ${clusterIP(0)} }\n`);
      await new Promise((r) => setTimeout(r, 1500)); // the stale-chain timer's deletion, off the restart's clock
      // A restarted daemon: a second instance finds the table full and rewrites it.
      await backend.stop?.();
      const restarted = await startBackend(sb, makeNft, false);
      const restart = await sync(restarted, w.tracker.checkpoint().state, changes);
      const rss = process.memoryUsage().rss / 2 ** 20;
      await restarted.cleanup(nodeContext(sb));
      await restarted.stop?.();
      // The iptables backend, same services, same namespace, into empty tables.
      let iptables = 'not measured';
      if (withIptables) {
        const ipt = await startBackend(sb, makeIpt);
        const { state: s2, changes: c2 } = w.tracker.checkpoint();
        const r = await sync(ipt, s2, { ...c2, servicePorts: new Set(s2.services.keys()) });
        iptables = fmt(r.ms);
        await ipt.cleanup(nodeContext(sb));
        await ipt.stop?.();
      }
      const stats = full.result.stats ?? {};
      log(
        `| ${n} | ${fmt(full.ms)} | ${iptables} | ${stats.transactions} | ${stats.lines} | ${fmt(median(partial))} | ${fmt(Math.min(...partial))} / ${fmt(Math.max(...partial))} | ${fmt(floor)} | ${fmt(listing)} | ${fmt(restart.ms)} | ${rss.toFixed(0)} MiB |`,
      );
      if (full.ms > STEP_LIMIT_MS) {
        log(`\nStopped: the ${n}-service step took longer than ${STEP_LIMIT_MS / 1000} s.`);
        break;
      }
    }

    log(`\nAfter the control-plane steps: ${loadLine()}.`);
    log(`\n## Data plane: TCP connect time to a ClusterIP (${CONNECTIONS} connections after ${WARM_UP} not counted, 1 endpoint per service, ${rounds} rounds)\n`);
    log('Time from connect() to the established socket, from a pod namespace through the node to a pod.');
    log('The target is the last service written; the others have one (unreachable) endpoint each. The sizes');
    log('and backends take turns, round after round, so that the machine\'s drift falls on all of them; each');
    log('figure is the median over the rounds, with the p50 of every round after it.\n');
    log('| services | backend | sync | connect p50 | p90 | p99 | p50 per round |');
    log('|---:|---|---:|---:|---:|---:|---|');
    const backends: [string, () => Backend][] = [['nftables', makeNft]];
    if (withIptables) backends.unshift(['iptables', makeIpt]);
    const stopped = new Set<string>();
    const measured = new Map<string, { syncMs: number[]; latency: Latency[] }>();
    for (let round = 0; round < rounds; round++) {
      for (const n of latencySizes) {
        const w = world(sb, n, 1);
        for (const [name, make] of backends) {
          if (stopped.has(`${name} ${n}`)) continue;
          let backend: Backend | undefined;
          try {
            backend = await startBackend(sb, make);
            const { state, changes } = w.tracker.checkpoint();
            // Each backend gets the full state; the tracker's checkpoint is reused for the second.
            const s = await sync(backend, state, { ...changes, servicePorts: new Set(state.services.keys()) });
            const l = await connectLatency(sb, w.target);
            const m = measured.get(`${n} ${name}`) ?? { syncMs: [], latency: [] };
            m.syncMs.push(s.ms);
            m.latency.push(l);
            measured.set(`${n} ${name}`, m);
            if (s.ms > STEP_LIMIT_MS) stopped.add(`${name} ${n}`);
          } catch (e) {
            log(`| ${n} | ${name} | failed: ${String((e as Error).message).replaceAll('|', '/').slice(0, 200)} | | | | |`);
            stopped.add(`${name} ${n}`);
          } finally {
            await backend?.cleanup(nodeContext(sb)).catch(() => undefined);
            await backend?.stop?.();
          }
        }
      }
    }
    for (const n of latencySizes) {
      for (const [name] of backends) {
        const m = measured.get(`${n} ${name}`);
        if (!m) continue;
        const q = (k: keyof Latency) => `${median(m.latency.map((l) => l[k])).toFixed(3)} ms`;
        log(`| ${n} | ${name} | ${fmt(median(m.syncMs))} | ${q('p50')} | ${q('p90')} | ${q('p99')} | ${m.latency.map((l) => l.p50.toFixed(3)).join(' / ')} |`);
      }
    }
    if (!withIptables) log('\niptables was not measured (--no-iptables).');
    log(`\nAt the end: ${loadLine()}.`);
  } finally {
    await sb.destroy();
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${lines.join('\n')}\n`);
  console.log(`\nwritten to ${out}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
