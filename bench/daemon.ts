// The built daemon (apps/kube-proxy/dist/cli.js) end to end at scale, in a fresh network namespace
// per run: N ClusterIP Services x E endpoints, fed through --manifests (one file, or many files) or
// through the in-repo API server over HTTP (the Kubernetes source). Per run it measures
//  - start to rules: from spawning the daemon to the end of its first sync (the backend's full
//    sync is read from kubeproxy_sync_full_proxy_rules_duration_seconds, the rest is the daemon's);
//  - memory: VmRSS right after the first sync, VmHWM (peak), and VmRSS at steady state;
//  - edit to rules: one endpoint changed (a one-line edit of the file, or an EndpointSlice update
//    through the API), to the end of the sync that carries it; for the API source, against
//    kubeproxy_network_programming_duration_seconds as well. The last edit is looked up in the kernel.
//
//   node --conditions=@kube-proxy-ts/source --import tsx daemon.ts [--modes iptables,nftables,none]
//     [--sources manifest,files,kubernetes] [--sizes 10000x10,1000x100,30000x3] [--edits 20]
//     [--min-sync 1s] [--steady-s 45] [--heap-snapshot DIR] [--json FILE] [--node-flags "--max-semi-space-size=2"]
//
// The daemon runs with the environment and V8 options of cli.js's interpreter line, as the binary does; --node-flags
// adds to them (a later option wins).
// --modes none runs daemon-sources.ts instead of the daemon: the same sources and tracker, no
// backend, to tell their share of memory and start-up time from the backend's.
// Run as root from bench/ after `pnpm build`. Each run creates kpts-dmnbench-* (deleted at the end)
// and runs itself inside it; nothing touches the host's namespace.

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// The app exports neither its test API server nor its sources; a benchmark of the daemon drives both.
import { TestApiServer, writeKubeconfig } from '@kube-proxy-ts/testing/apiserver';
import { summarizeHeapSnapshot } from './heap-snapshot.js';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
const NODE_NAME = 'bench-node';
const METRICS = '127.0.0.1:10249';

/** The environment and node options of the daemon's interpreter line (`#!/usr/bin/env -S A=B node ...`): what running the binary gives it. */
function interpreterLine(file: string): { env: Record<string, string>; flags: string[] } {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const words = /^#!.*\benv -S (.*)$/.exec(first)?.[1]?.trim().split(/\s+/) ?? [];
  const node = words.indexOf('node');
  const env = Object.fromEntries(words.slice(0, Math.max(node, 0)).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  return { env, flags: node < 0 ? [] : words.slice(node + 1) };
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

/** 'none': the sources and trackers alone (daemon-sources.ts), to tell their share from the backend's. */
type Mode = 'iptables' | 'nftables' | 'none';
type SourceKind = 'manifest' | 'files' | 'kubernetes';
interface RunSpec {
  mode: Mode;
  source: SourceKind;
  services: number;
  endpoints: number;
}

type RssParts = { file: number; brk: number; anon: number; lazyFree: number };

interface RunResult extends RunSpec {
  startToSyncedMs: number;
  startToRulesMs: number;
  fullSyncMs: number;
  rssAfterFirstSyncMiB: number;
  peakRssMiB: number;
  rssSteadyMiB: number;
  /** At steady state, from the daemon's nodejs_* metrics: V8's heap (committed, live after the last GC) and memory outside it. */
  heapSteadyMiB: { total: number; used: number; external: number };
  /** RSS by kind of mapping after the first sync and at steady state (before the edits). */
  rssParts: { first: RssParts; steady: RssParts };
  editMs: number[];
  programmingMetricMs: number[];
  lastEditInKernel: boolean;
  heap?: string;
  load: [number, number];
}

// --- objects ---------------------------------------------------------------------------------

const svcName = (i: number) => `svc${i}`;
const nsName = (i: number) => `ns${i % 100}`;
const clusterIP = (i: number) => `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
function endpointIP(i: number, e: number, per: number, generation: number): string {
  const idx = i * per + e;
  return `${10 + generation}.${1 + (idx >> 16)}.${(idx >> 8) & 255}.${idx & 255}`;
}

function nodeObject() {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NODE_NAME },
    spec: { podCIDRs: ['10.0.0.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.50.1' }] },
  };
}

function serviceObject(i: number) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: svcName(i), namespace: nsName(i) },
    spec: { type: 'ClusterIP', clusterIP: clusterIP(i), clusterIPs: [clusterIP(i)], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
  };
}

function sliceObject(i: number, per: number, ips: (e: number) => string, triggerTime?: string) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${svcName(i)}-abcde`,
      namespace: nsName(i),
      labels: { 'kubernetes.io/service-name': svcName(i) },
      ...(triggerTime ? { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': triggerTime } } : {}),
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: Array.from({ length: per }, (_, e) => ({ addresses: [ips(e)], conditions: { ready: true }, nodeName: 'other' })),
  };
}

// Block YAML as kubectl writes it, one value per line, so that an edit can be one line.
function serviceYaml(i: number): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${svcName(i)}
  namespace: ${nsName(i)}
spec:
  type: ClusterIP
  clusterIP: ${clusterIP(i)}
  clusterIPs:
  - ${clusterIP(i)}
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
`;
}

function sliceYaml(i: number, per: number): string {
  let eps = '';
  for (let e = 0; e < per; e++) eps += `- addresses:\n  - ${endpointIP(i, e, per, 0)}\n  conditions:\n    ready: true\n  nodeName: other\n`;
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${svcName(i)}-abcde
  namespace: ${nsName(i)}
  labels:
    kubernetes.io/service-name: ${svcName(i)}
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
${eps}`;
}

const NODE_YAML = `apiVersion: v1
kind: Node
metadata:
  name: ${NODE_NAME}
spec:
  podCIDRs:
  - 10.0.0.0/24
status:
  addresses:
  - type: InternalIP
    address: 192.168.50.1
`;

// --- the daemon ------------------------------------------------------------------------------

function procStatus(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** Where the RSS is, from /proc/<pid>/smaps: mapped files (the node binary, libraries), malloc's brk heap, and other anonymous memory (V8's heap, large mallocs, stacks). */
function rssParts(pid: number): RssParts {
  const parts = { file: 0, brk: 0, anon: 0, lazyFree: 0 };
  let where: 'file' | 'brk' | 'anon' = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1] ?? '';
      where = name.startsWith('/') ? 'file' : name === '[heap]' ? 'brk' : 'anon';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) parts[where] += Number(rss[1]) / 1024;
    const lazy = /^LazyFree:\s+(\d+) kB/.exec(line);
    if (lazy) parts.lazyFree += Number(lazy[1]) / 1024;
  }
  return parts;
}

async function metrics(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const text = await (await fetch(`http://${METRICS}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    for (const line of text.split('\n')) {
      if (line.startsWith('#') || line === '') continue;
      const sp = line.lastIndexOf(' ');
      out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
  } catch {
    // not listening yet
  }
  return out;
}
const IPV4 = '{ip_family="IPv4"}';
const metric = (m: Map<string, number>, name: string) => m.get(`kubeproxy_${name}${IPV4}`) ?? 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function kernelHolds(mode: Mode, ip: string): boolean {
  const argv = mode === 'iptables' ? ['iptables-save', '-t', 'nat'] : ['nft', 'list', 'table', 'ip', 'kube-proxy'];
  const r = spawnSync(argv[0] as string, argv.slice(1), { maxBuffer: 1 << 30, timeout: 300_000 });
  return r.stdout.toString().includes(ip);
}

async function runInside(spec: RunSpec): Promise<RunResult> {
  const minSync = arg('min-sync', '1s');
  const steadyMs = Number(arg('steady-s', '45')) * 1000;
  const edits = spec.mode === 'none' ? 0 : Number(arg('edits', '20'));
  const snapshotDir = arg('heap-snapshot', '');
  const dir = mkdtempSync(join(tmpdir(), 'kpts-dmnbench-'));
  const { services: n, endpoints: per } = spec;
  let api: TestApiServer | undefined;
  let sourceArgs: string[];
  let editOnce: (k: number, g: number) => Promise<string>;

  if (spec.source === 'kubernetes') {
    api = await TestApiServer.start({ bookmarkIntervalMs: 10_000 });
    api.apply('nodes', nodeObject());
    for (let i = 0; i < n; i++) {
      api.apply('services', serviceObject(i));
      api.apply('endpointslices', sliceObject(i, per, (e) => endpointIP(i, e, per, 0)));
    }
    api.compact();
    sourceArgs = [`--kubeconfig=${await writeKubeconfig(dir, api.url)}`];
    editOnce = async (k, g) => {
      const ip = endpointIP(k, 0, per, g);
      (api as TestApiServer).apply('endpointslices', sliceObject(k, per, (e) => (e === 0 ? ip : endpointIP(k, e, per, 0)), new Date().toISOString()));
      return ip;
    };
  } else {
    // "files": 100 Services (and their slices) per file; "manifest": all in one file.
    const perFile = spec.source === 'files' ? 100 : n;
    const mdir = join(dir, 'manifests');
    mkdirSync(mdir);
    const fileOf = (i: number) => join(mdir, `objects-${String(Math.floor(i / perFile)).padStart(5, '0')}.yaml`);
    const texts = new Map<string, string[]>();
    for (let i = 0; i < n; i++) {
      const f = fileOf(i);
      if (!texts.has(f)) texts.set(f, []);
      (texts.get(f) as string[]).push(serviceYaml(i), sliceYaml(i, per));
    }
    writeFileSync(join(mdir, 'node.yaml'), NODE_YAML);
    const docs = new Map<string, string>();
    for (const [f, parts] of texts) {
      docs.set(f, parts.join('---\n'));
      writeFileSync(f, docs.get(f) as string);
    }
    sourceArgs = [`--manifests=${mdir}`];
    editOnce = async (k, g) => {
      const f = fileOf(k);
      const ip = endpointIP(k, 0, per, g);
      // The one line that holds service k's first endpoint address.
      const old = `\n  - ${endpointIP(k, 0, per, g - 1)}\n`;
      const text = docs.get(f) as string;
      if (!text.includes(old)) throw new Error(`edit ${g}: ${old.trim()} not found in ${f}`);
      docs.set(f, text.replace(old, `\n  - ${ip}\n`));
      // Written beside and renamed over, as editors and ConfigMap updates do.
      writeFileSync(`${f}.tmp`, docs.get(f) as string);
      renameSync(`${f}.tmp`, f);
      return ip;
    };
  }

  // The daemon's own V8 options apply to the sources-only run too, so that the two compare.
  const interpreter = interpreterLine(CLI);
  const daemonArgs = [
    ...interpreter.flags,
    ...arg('node-flags', '').split(' ').filter(Boolean),
    ...(snapshotDir ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`] : []),
    ...(spec.mode === 'none' ? [...process.execArgv, fileURLToPath(new URL('daemon-sources.ts', import.meta.url))] : [CLI]),
    ...sourceArgs,
    `--proxy-mode=${spec.mode}`,
    `--hostname-override=${NODE_NAME}`,
    `--metrics-bind-address=${METRICS}`,
    '--healthz-bind-address=127.0.0.1:10256',
    `--iptables-min-sync-period=${minSync}`,
    '--iptables-sync-period=1h',
    '--v=0',
  ];
  const load0 = loadavg()[0] as number;
  const t0 = performance.now();
  const t0Wall = Date.now();
  const daemon: ChildProcess = spawn(process.execPath, daemonArgs, {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    env: { ...process.env, ...interpreter.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  let syncedAt = 0;
  const onOut = (b: Buffer) => {
    const s = b.toString();
    if (!syncedAt && s.includes('Sources synced')) syncedAt = performance.now();
    log = (log + s).slice(-20_000);
  };
  daemon.stdout?.on('data', onOut);
  daemon.stderr?.on('data', onOut);
  const pid = daemon.pid as number;
  try {
    // The end of the first sync as the daemon stamped it (what it does after, a collection
    // included, is not the rules' time), on this process's clock.
    const syncEndWall = await until(
      'the first sync',
      async () => {
        if (daemon.exitCode !== null) throw new Error(`daemon exited ${daemon.exitCode}:\n${log.slice(-3000)}`);
        const at = metric(await metrics(), 'sync_proxy_rules_last_timestamp_seconds');
        return at > 0 ? at * 1000 : undefined;
      },
      600_000,
      100,
    );
    const tRules = t0 + (syncEndWall - t0Wall);
    const first = procStatus(pid);
    const firstParts = rssParts(pid);
    // The first sync must hold every Service and endpoint, or the figures mean nothing.
    const done = await until('the first sync log line', () => /First sync done.*?services[=":]+(\d+).*?endpoints[=":]+(\d+)/.exec(log) ?? undefined, 10_000);
    if (Number(done[1]) !== n || Number(done[2]) !== n * per) throw new Error(`first sync held ${done[1]} Services and ${done[2]} endpoints, not ${n} and ${n * per}`);
    const m0 = await metrics();
    const fullSyncMs = metric(m0, 'sync_full_proxy_rules_duration_seconds_sum') * 1000;
    await sleep(steadyMs);
    const steady = procStatus(pid);
    const steadyParts = rssParts(pid);
    const mSteady = await metrics();
    const heapSteadyMiB = {
      total: (mSteady.get('nodejs_heap_size_total_bytes') ?? NaN) / 2 ** 20,
      used: (mSteady.get('nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20,
      external: (mSteady.get('nodejs_external_memory_bytes') ?? NaN) / 2 ** 20,
    };

    const editMs: number[] = [];
    const programmingMetricMs: number[] = [];
    const k = Math.floor(n / 2);
    let lastIP = '';
    for (let g = 1; g <= edits; g++) {
      const before = await metrics();
      const syncs0 = metric(before, 'sync_proxy_rules_duration_seconds_count');
      const npCount0 = metric(before, 'network_programming_duration_seconds_count');
      const npSum0 = metric(before, 'network_programming_duration_seconds_sum');
      const t = performance.now();
      lastIP = await editOnce(k, g);
      const [doneAt, after] = await until(
        `edit ${g} to be synced`,
        async () => {
          const m = await metrics();
          const counted = metric(m, 'sync_proxy_rules_endpoint_changes_total') > metric(before, 'sync_proxy_rules_endpoint_changes_total');
          return counted && metric(m, 'sync_proxy_rules_duration_seconds_count') > syncs0 ? ([performance.now(), m] as const) : undefined;
        },
        120_000,
        20,
      );
      editMs.push(doneAt - t);
      if (spec.source === 'kubernetes' && metric(after, 'network_programming_duration_seconds_count') > npCount0) {
        programmingMetricMs.push((metric(after, 'network_programming_duration_seconds_sum') - npSum0) * 1000);
      }
      // Spread the edits over the min-sync window: some land right after a sync, some long after.
      await sleep(Math.random() * 2000);
    }
    const lastEditInKernel = edits > 0 ? kernelHolds(spec.mode, lastIP) : true;
    const final = procStatus(pid);

    let heap: string | undefined;
    if (snapshotDir) {
      const beforeFiles = new Set(readdirSync(dir));
      process.kill(pid, 'SIGUSR2');
      const file = await until(
        'the heap snapshot',
        () => {
          const f = readdirSync(dir).find((x) => x.endsWith('.heapsnapshot') && !beforeFiles.has(x));
          if (!f) return undefined;
          const st = spawnSync('fuser', [join(dir, f)]);
          return st.status === 0 ? undefined : join(dir, f);
        },
        300_000,
        500,
      );
      mkdirSync(snapshotDir, { recursive: true });
      const dest = join(snapshotDir, `${spec.mode}-${spec.source}-${n}x${per}.heapsnapshot`);
      execFileSync('cp', [file, dest]);
      heap = `${dest}\n${summarizeHeapSnapshot(dest, 25, true)}`;
    }
    return {
      ...spec,
      startToSyncedMs: syncedAt ? syncedAt - t0 : NaN,
      startToRulesMs: tRules - t0,
      fullSyncMs,
      rssAfterFirstSyncMiB: first.rss,
      peakRssMiB: final.hwm,
      rssSteadyMiB: Math.max(steady.rss, final.rss),
      heapSteadyMiB,
      rssParts: { first: firstParts, steady: steadyParts },
      editMs,
      programmingMetricMs,
      lastEditInKernel,
      ...(heap ? { heap } : {}),
      load: [load0, loadavg()[0] as number],
    };
  } finally {
    // SIGTERM first, so that a profile asked for with --node-flags (--cpu-prof) is written.
    if (daemon.exitCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    daemon.kill('SIGKILL');
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- the driver ------------------------------------------------------------------------------

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}
const sec = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : '-');
const mib = (x: number) => `${Math.round(x)} MiB`;

function row(r: RunResult): string {
  const edit = r.editMs.length ? `${sec(pct(r.editMs, 50))} / ${sec(pct(r.editMs, 99))}` : '-';
  const np = r.programmingMetricMs.length ? `${sec(pct(r.programmingMetricMs, 50))} / ${sec(pct(r.programmingMetricMs, 99))}` : '-';
  return `| ${r.mode} | ${r.source} | ${r.services} x ${r.endpoints} | ${sec(r.startToSyncedMs)} | ${sec(r.startToRulesMs)} | ${sec(r.fullSyncMs)} | ${sec(r.startToRulesMs - r.fullSyncMs)} | ${mib(r.rssAfterFirstSyncMiB)} | ${mib(r.peakRssMiB)} | ${mib(r.rssSteadyMiB)} | ${mib(r.heapSteadyMiB.total)} / ${mib(r.heapSteadyMiB.used)} / ${mib(r.heapSteadyMiB.external)} | ${edit} | ${np} | ${r.lastEditInKernel ? 'yes' : 'NO'} | ${r.load[0].toFixed(1)}-${r.load[1].toFixed(1)} |`;
}

async function main(): Promise<void> {
  const inside = arg('inside', '');
  if (inside) {
    const [mode, source, size] = inside.split(':') as [Mode, SourceKind, string];
    const [services, endpoints] = size.split('x').map(Number) as [number, number];
    const r = await runInside({ mode, source, services, endpoints });
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('run as root: every run creates a network namespace');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run pnpm build first`);
  const modes = arg('modes', 'iptables,nftables').split(',') as Mode[];
  const sources = arg('sources', 'manifest,kubernetes').split(',') as SourceKind[];
  const sizes = arg('sizes', '10000x10').split(',');
  const results: RunResult[] = [];
  const header =
    '| mode | source | services x endpoints | start to sources synced | start to rules | backend full sync | the rest | RSS after first sync | peak RSS | RSS steady | heap total / used / external, steady | edit to rules p50 / p99 | network_programming p50 / p99 | last edit in kernel | load |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|';
  for (const size of sizes) {
    for (const mode of modes) {
      for (const source of sources) {
        const netns = `kpts-dmnbench-${randomBytes(3).toString('hex')}`;
        execFileSync('ip', ['netns', 'add', netns], { timeout: 15_000 });
        try {
          execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up'], { timeout: 15_000 });
          const self = fileURLToPath(import.meta.url);
          const passOn = process.argv.slice(2);
          const child = spawnSync('ip', ['netns', 'exec', netns, process.execPath, ...process.execArgv, self, ...passOn, '--inside', `${mode}:${source}:${size}`], {
            stdio: ['ignore', 'pipe', 'inherit'],
            maxBuffer: 1 << 26,
            timeout: 3_600_000,
          });
          const out = child.stdout?.toString() ?? '';
          const line = out.split('\n').find((l) => l.startsWith('RESULT '));
          if (!line) {
            console.error(`${mode} ${source} ${size}: no result (exit ${child.status})\n${out.slice(-3000)}`);
            continue;
          }
          const r = JSON.parse(line.slice('RESULT '.length)) as RunResult;
          results.push(r);
          console.log(header.split('\n')[0]);
          console.log(row(r));
          const parts = (p: RssParts) => `files ${mib(p.file)}, malloc heap ${mib(p.brk)}, other anonymous ${mib(p.anon)} (freed but not yet reclaimed, MADV_FREE: ${mib(p.lazyFree)})`;
          console.log(`RSS after the first sync: ${parts(r.rssParts.first)}; steady: ${parts(r.rssParts.steady)}`);
          if (r.heap) console.log(r.heap);
        } finally {
          spawnSync('ip', ['netns', 'del', netns], { timeout: 60_000 });
        }
      }
    }
  }
  console.log(`\n${header}\n${results.map(row).join('\n')}`);
  const jsonOut = arg('json', '');
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results, null, 2));
}

await main();
