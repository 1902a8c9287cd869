// Upstream kube-proxy and ours side by side: the same mode, the same configuration file, fed by
// the same real kube-apiserver (e2e/oracle/pair.ts: each daemon in a node namespace of its own,
// etcd and kube-apiserver in a third). Per size (Services x 10 endpoints, remote endpoints):
//   - how long writing the objects to the API took;
//   - each daemon's first full sync: its kubeproxy_sync_proxy_rules_duration_seconds, and the time
//     from its start until the kernel holds every Service's endpoints (checked in the kernel; timed
//     by the daemon's last-sync gauge when that first sync was its only one);
//   - one endpoint change: from the API write until the end of the sync that put the new
//     endpoint in the kernel (checked in the kernel; timed by the daemon's last-sync gauge);
//   - a restarted daemon's first sync (the rules of the previous run still in the kernel);
//   - peak RSS (VmHWM) and CPU seconds (utime+stime, plus waited-for children such as
//     iptables-restore) from /proc/<pid>.
// The daemons run one after the other, never together, so they do not compete for the 2 cores.
//
//   node --conditions=@kube-proxy-ts/source --import tsx upstream.ts [--sizes 1000,5000] [--modes iptables,nftables] [--out results/upstream.md]
//     [--sides upstream,ours] [--show-log]   (--show-log prints each daemon's log after its first sync)
//
// Root only; needs scripts/build-kubernetes.sh's binaries and a built daemon (pnpm build).

import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { endpointSlice, node, service } from '@kube-proxy-ts/testing';
import { DaemonPair, metricValue, pairUnsupportedReason, type ProxyMode, type Side } from '../e2e/oracle/pair.js';
import { kubernetesVersion, waitUntil } from '../e2e/real-cluster.js';

const NS = 'bench';
const ENDPOINTS = 10;
const CREATE_CONCURRENCY = 48;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const clusterIP = (i: number) => `10.96.${16 + Math.floor(i / 250)}.${1 + (i % 250)}`;
const endpointIP = (i: number, j: number) => {
  const n = i * ENDPOINTS + j;
  return `10.${128 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
};
/** The endpoint changes move service 0's first endpoint to 10.127.0.<k>: outside every other. */
const CHANGED_PREFIX = '10.127.0.';
const CHANGES = 3;

function slice(i: number, first = endpointIP(i, 0)) {
  const endpoints = Array.from({ length: ENDPOINTS }, (_, j) => ({ ip: j === 0 ? first : endpointIP(i, j), nodeName: 'node2' }));
  const s = endpointSlice(NS, `svc-${i}`, { name: `svc-${i}-1`, endpoints, ports: [{ name: 'http', port: 8080 }] });
  delete s.metadata!.uid;
  return s;
}

async function createObjects(pair: DaemonPair, from: number, to: number): Promise<number> {
  const started = Date.now();
  let next = from;
  await Promise.all(
    Array.from({ length: CREATE_CONCURRENCY }, async () => {
      while (next < to) {
        const i = next++;
        const svc = service(NS, `svc-${i}`, { clusterIP: clusterIP(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
        delete svc.metadata!.uid;
        await pair.core.createNamespacedService({ namespace: NS, body: svc });
        await pair.discovery.createNamespacedEndpointSlice({ namespace: NS, body: slice(i) });
      }
    }),
  );
  return Date.now() - started;
}

/** How many Services the kernel of `side` holds with all their endpoints, cheaply. */
async function programmed(pair: DaemonPair, side: Side, mode: ProxyMode): Promise<number> {
  const sb = pair.node(side);
  if (mode === 'iptables') {
    const save = await sb.execOk('node', ['iptables-save', '-t', 'nat'], { timeoutMs: 120_000 });
    let seps = 0;
    for (const line of save.split('\n')) if (line.startsWith('-A KUBE-SEP-') && line.includes('DNAT')) seps++;
    return Math.floor(seps / ENDPOINTS);
  }
  const r = await sb.exec('node', ['nft', '-j', 'list', 'map', 'ip', 'kube-proxy', 'service-ips'], { timeoutMs: 120_000 });
  if (r.code !== 0) return 0;
  const doc = JSON.parse(r.stdout) as { nftables?: Array<{ map?: { elem?: unknown[] } }> };
  return doc.nftables?.find((e) => e.map)?.map?.elem?.length ?? 0;
}

async function kernelHolds(pair: DaemonPair, side: Side, mode: ProxyMode, text: string): Promise<boolean> {
  const sb = pair.node(side);
  const out =
    mode === 'iptables'
      ? await sb.execOk('node', ['iptables-save', '-t', 'nat'], { timeoutMs: 120_000 })
      : await sb.execOk('node', ['nft', 'list', 'table', 'ip', 'kube-proxy'], { timeoutMs: 120_000 });
  return out.includes(text);
}

interface Histogram { sum: number; count: number }
async function syncHistogram(pair: DaemonPair, side: Side): Promise<Histogram> {
  const text = await pair.metrics(side);
  // IPv4 only: upstream also runs an (empty) IPv6 proxier on an IPv4 node, with its own syncs.
  const sum = metricValue(text, 'kubeproxy_sync_proxy_rules_duration_seconds_sum', 'sum', 'IPv4');
  const count = metricValue(text, 'kubeproxy_sync_proxy_rules_duration_seconds_count', 'sum', 'IPv4');
  return { sum: Number.isNaN(sum) ? 0 : sum, count: Number.isNaN(count) ? 0 : count };
}

/** Peak RSS in MiB and CPU seconds (own and waited-for children) of a process. */
function usage(pid: number): { peakRssMiB: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  // Fields after the command (which may hold spaces) start at state: utime is field 14 overall.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((n, k) => n + Number(fields[k]), 0); // utime stime cutime cstime
  return { peakRssMiB: hwm / 1024, cpuS: ticks / 100 };
}

interface Run {
  mode: ProxyMode;
  side: Side;
  services: number;
  /** Set when the first sync did not reach the kernel within this many seconds. */
  timedOutS?: number;
  firstSyncS: number;
  firstSyncCount: number;
  toKernelS: number;
  changeToKernelMs: number;
  changeSyncMs: number;
  restartSyncS: number;
  restartToKernelS: number;
  peakRssMiB: number;
  cpuS: number;
  load: string[];
}

async function measure(pair: DaemonPair, side: Side, mode: ProxyMode, services: number): Promise<Run> {
  const loads: string[] = [];
  const timeout = Math.max(120_000, services * 90);
  const pid = () => pair.daemons.get(side)!.child.pid!;
  await pair.cleanup(side);

  // First full sync into an empty kernel.
  loads.push(load());
  const t0 = Date.now();
  await pair.startDaemon(side, { mode, verbosity: 2 });
  let seen = 0;
  try {
    await waitUntil(
      `${side} to program ${services} Services`,
      async () => {
        pair.assertRunning();
        seen = await programmed(pair, side, mode);
        return seen >= services;
      },
      timeout,
    );
  } catch (err) {
    // Recorded as a result (the other daemon is still measured), not a failure of the run.
    console.log(`${side}: ${err instanceof Error ? err.message : String(err)}; ${seen} programmed\n${pair.log(side)}`);
    const used = usage(pid());
    await pair.stopDaemon(side);
    return { mode, side, services, timedOutS: timeout / 1000, firstSyncS: Number.NaN, firstSyncCount: 0, toKernelS: Number.NaN, changeToKernelMs: Number.NaN, changeSyncMs: Number.NaN, restartSyncS: Number.NaN, restartToKernelS: Number.NaN, peakRssMiB: used.peakRssMiB, cpuS: used.cpuS, load: [...loads, load()] };
  }
  const first = await syncHistogram(pair, side);
  if (process.argv.includes('--show-log')) console.log(`${side}'s log after its first sync:\n${pair.log(side, 60)}`);
  // Listing a 10k table takes nft seconds, so the poll above lags: when that was the daemon's only
  // sync, its end is the daemon's last-sync gauge.
  const firstSyncedAt = metricValue(await pair.metrics(side), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'max', 'IPv4') * 1000;
  const toKernelS = (first.count === 1 && Number.isFinite(firstSyncedAt) && firstSyncedAt >= t0 ? firstSyncedAt - t0 : Date.now() - t0) / 1000;
  loads.push(load());

  // One endpoint change, three times (median): service 0's first endpoint moves to a new address
  // and back, each step waited for in the kernel and in the sync counter.
  const changes: Array<{ toKernelMs: number; syncMs: number }> = [];
  for (let k = 0; k < CHANGES; k++) {
    await new Promise((r) => setTimeout(r, 1500));
    const before = await syncHistogram(pair, side);
    const t1 = Date.now();
    const moved = `${CHANGED_PREFIX}${k + 1}`;
    await pair.discovery.replaceNamespacedEndpointSlice({ namespace: NS, name: 'svc-0-1', body: slice(0, moved) });
    await waitUntil(`${side} to program the changed endpoint`, async () => kernelHolds(pair, side, mode, mode === 'iptables' ? `${moved}:8080` : moved), timeout, () => pair.log(side));
    // The kernel check above costs a dump of the table (seconds at 5k), so the time is taken
    // from the daemon's last-sync gauge: the sync that wrote the change ended then.
    const syncedAt = metricValue(await pair.metrics(side), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'max', 'IPv4') * 1000;
    const toKernelMs = Number.isFinite(syncedAt) && syncedAt >= t1 ? syncedAt - t1 : Date.now() - t1;
    console.log(`${side}: endpoint change ${k + 1} written at ${new Date(t1).toISOString()}, in the kernel ${toKernelMs} ms later`);
    await waitUntil(`${side} to count the sync`, async () => (await syncHistogram(pair, side)).count > before.count, 30_000);
    const after = await syncHistogram(pair, side);
    changes.push({ toKernelMs, syncMs: ((after.sum - before.sum) / (after.count - before.count)) * 1000 });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const changeToKernelMs = median(changes.map((c) => c.toKernelMs));
  const changeSyncMs = median(changes.map((c) => c.syncMs));
  // Back to where it was, so the next daemon finds the same objects. (Stale endpoint chains may
  // stay: above 1000 endpoints upstream deletes them only on its periodic full sync.)
  const beforeRevert = await syncHistogram(pair, side);
  await pair.discovery.replaceNamespacedEndpointSlice({ namespace: NS, name: 'svc-0-1', body: slice(0) });
  await waitUntil(`${side} to sync the endpoint back`, async () => (await syncHistogram(pair, side)).count > beforeRevert.count, timeout);
  loads.push(load());
  const firstUsage = usage(pid());

  // A restarted daemon: the rules of the previous one are still in the kernel.
  await pair.stopDaemon(side);
  const t2 = Date.now();
  await pair.startDaemon(side, { mode, verbosity: 2 });
  await waitUntil(`${side} to sync after the restart`, async () => (pair.assertRunning(), (await syncHistogram(pair, side)).count >= 1), timeout, () => pair.log(side));
  const restartToKernelS = (Date.now() - t2) / 1000;
  const restart = await syncHistogram(pair, side);
  loads.push(load());
  const restartUsage = usage(pid());
  await pair.stopDaemon(side);

  return {
    mode,
    side,
    services,
    firstSyncS: first.sum,
    firstSyncCount: first.count,
    toKernelS,
    changeToKernelMs,
    changeSyncMs,
    restartSyncS: restart.sum / Math.max(1, restart.count),
    restartToKernelS,
    peakRssMiB: Math.max(firstUsage.peakRssMiB, restartUsage.peakRssMiB),
    cpuS: firstUsage.cpuS,
    load: loads,
  };
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const ratio = (ours: number, upstream: number) => (upstream > 0 ? `${(ours / upstream).toFixed(2)}x` : 'n/a');

async function main(): Promise<void> {
  const reason = pairUnsupportedReason();
  if (reason) throw new Error(`cannot run: ${reason}`);
  const sizes = arg('sizes', '1000').split(',').map(Number);
  const modes = arg('modes', 'iptables').split(',') as ProxyMode[];
  const out = arg('out', '');
  const started = new Date();
  const lines: string[] = [];
  const say = (s: string) => {
    console.log(s);
    lines.push(s);
  };

  const pair = await DaemonPair.start({ tag: 'bup', ipv6: false, pods: 1 });
  try {
    await pair.core.createNamespace({ body: { metadata: { name: NS } } });
    const n = node('node1', { addresses: [pair.node('ours').node.ip], podCIDRs: [pair.node('ours').plan.podCIDR] });
    delete n.metadata!.uid;
    await pair.core.createNode({ body: n });

    say(`# upstream kube-proxy ${kubernetesVersion()} and ours, side by side`);
    say('');
    say(`bench/upstream.ts, ${started.toISOString()}, host ${hostname()}, ${cpus().length} cores; Services x ${ENDPOINTS} remote endpoints; the daemons run one at a time.`);
    say('Load averages (1/5/15 min) are quoted per run: at start, after the first sync, after the change, after the restart.');
    say('');
    const results: Run[] = [];
    let created = 0;
    for (const size of sizes) {
      const loadBefore = load();
      const ms = await createObjects(pair, created, size);
      say(`- ${size} Services: writing Services ${created}..${size - 1} and their EndpointSlices took ${(ms / 1000).toFixed(1)} s (${CREATE_CONCURRENCY} concurrent clients' requests; load ${loadBefore})`);
      created = size;
      for (const mode of modes) {
        for (const side of arg('sides', 'upstream,ours').split(',') as Side[]) {
          const r = await measure(pair, side, mode, size);
          results.push(r);
          console.log(JSON.stringify(r));
        }
      }
    }
    say('');
    say('| mode | services | daemon | first full sync (metric) | start to kernel | endpoint change: sync (metric, median of 3) | edit to kernel (median of 3) | restarted daemon: first sync (metric) | restart to first sync | peak RSS | CPU s (first run) | load averages |');
    say('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const r of results) {
      if (r.timedOutS) {
        say(`| ${r.mode} | ${r.services} | ${r.side} | not done after ${r.timedOutS} s | not done after ${r.timedOutS} s | | | | | ${fmt(r.peakRssMiB, 0)} MiB | ${fmt(r.cpuS, 1)} | ${r.load.join(' / ')} |`);
        continue;
      }
      say(`| ${r.mode} | ${r.services} | ${r.side} | ${fmt(r.firstSyncS)} s${r.firstSyncCount > 1 ? ` (${r.firstSyncCount} syncs)` : ''} | ${fmt(r.toKernelS)} s | ${fmt(r.changeSyncMs, 0)} ms | ${fmt(r.changeToKernelMs, 0)} ms | ${fmt(r.restartSyncS)} s | ${fmt(r.restartToKernelS)} s | ${fmt(r.peakRssMiB, 0)} MiB | ${fmt(r.cpuS, 1)} | ${r.load.join(' / ')} |`);
    }
    say('');
    say('Ratios ours / upstream (below 1: ours is faster or smaller):');
    say('');
    say('| mode | services | first full sync | start to kernel | endpoint change sync | edit to kernel | restarted first sync | peak RSS | CPU s |');
    say('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const u of results.filter((r) => r.side === 'upstream')) {
      const o = results.find((r) => r.side === 'ours' && r.mode === u.mode && r.services === u.services);
      if (!o) continue;
      // Upstream not done within the timeout: ours' time over the timeout is an upper bound.
      const toKernel = u.timedOutS ? `< ${(o.toKernelS / u.timedOutS).toFixed(2)}x` : ratio(o.toKernelS, u.toKernelS);
      say(`| ${u.mode} | ${u.services} | ${ratio(o.firstSyncS, u.firstSyncS)} | ${toKernel} | ${ratio(o.changeSyncMs, u.changeSyncMs)} | ${ratio(o.changeToKernelMs, u.changeToKernelMs)} | ${ratio(o.restartSyncS, u.restartSyncS)} | ${ratio(o.peakRssMiB, u.peakRssMiB)} | ${u.timedOutS ? 'n/a' : ratio(o.cpuS, u.cpuS)} |`);
    }
  } finally {
    await pair.stop();
  }
  if (out) writeFileSync(out, `${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
