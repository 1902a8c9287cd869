// Userspace proxy vs a direct connection vs HAProxy (TCP mode), on loopback, in one run:
//   bulk throughput (GB/s; 1 and 16 streams), connection rate (new connections/s with a small
//   response), and the latency a proxy adds (p50/p99) at a fixed rate of new connections.
// Every path leads to the same upstream server process; the load generator is this process.
// Usage (from bench/): node --conditions=@kube-proxy-ts/source --import tsx userspace.ts [--rounds N] [--quick]
// Writes results/userspace.md. Everything listens on 127.0.0.1 and every child is killed at exit.
// With --leak-check N it instead sends N connections through the userspace proxy (a few of them
// aborted by the client) and compares the proxy's descriptors, handles and timers before and
// after; it exits non-zero when anything is left over. Writes results/userspace-leak.md.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const rounds = Number(args[args.indexOf('--rounds') + 1]) || (quick ? 1 : 3);
const leakCheck = args.includes('--leak-check') ? Number(args[args.indexOf('--leak-check') + 1]) : 0;
const BULK_BYTES = (quick ? 256 : 512) * 1024 * 1024;
const RATE_MS = quick ? 1000 : 2000;
const RATE_CONCURRENCY = 32;
// Below every path's capacity on a busy 2-core machine, so the figure is latency, not queueing.
const LATENCY_RPS = 100;
const LATENCY_MS = quick ? 1000 : 3000;
const MEASURE_TIMEOUT_MS = 60_000;

const children: ChildProcess[] = [];
const killAll = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
};
process.on('exit', killAll);
process.on('SIGINT', () => process.exit(130));

// Upstream: "bulk" sends the number of bytes the client asks for; "rr" answers a small response.
const UPSTREAM = `
const net = require('node:net');
const chunk = Buffer.alloc(256 * 1024, 120);
const bulk = net.createServer((s) => {
  s.on('error', () => {});
  s.once('data', (d) => {
    let left = parseInt(d.toString(), 10);
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
});
const rr = net.createServer((s) => {
  s.on('error', () => {});
  s.once('data', () => s.end('HTTP/1.0 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok'));
});
bulk.listen(0, '127.0.0.1', () => rr.listen(0, '127.0.0.1', () =>
  process.stdout.write(JSON.stringify({ bulk: bulk.address().port, rr: rr.address().port }) + '\\n')));
`;

function startChild(command: string, argv: string[], cwd = HERE): ChildProcess {
  const child = spawn(command, argv, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  child.stderr!.on('data', (b: Buffer) => process.stderr.write(`[${command}] ${b}`));
  return child;
}

function firstJsonLine<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start`)), 30_000);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line) as T);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => (c.destroy(), resolve(true)));
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startHAProxy(dir: string, up: Ports, threads: number): Promise<Ports> {
  const ports = { bulk: await freePort(), rr: await freePort() };
  const cfg = join(dir, `haproxy-${threads}.cfg`);
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 8000',
      `  nbthread ${threads}`,
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      `listen bulk`,
      `  bind 127.0.0.1:${ports.bulk}`,
      `  server s1 127.0.0.1:${up.bulk}`,
      `listen rr`,
      `  bind 127.0.0.1:${ports.rr}`,
      `  server s1 127.0.0.1:${up.rr}`,
      '',
    ].join('\n'),
  );
  const child = startChild('haproxy', ['-db', '-f', cfg]);
  await waitListening(ports.bulk);
  await waitListening(ports.rr);
  return { ...ports, pid: child.pid };
}

interface Ports {
  bulk: number;
  rr: number;
  /** The proxy's process, whose CPU time is accounted; none for the direct path. */
  pid?: number;
}

/** Open descriptors of a process (to show the proxy leaks none over a run). */
function openFds(pid: number | undefined): number {
  try {
    return pid === undefined ? 0 : readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used so far; 0 without a process. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks; USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_r, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), MEASURE_TIMEOUT_MS).unref())]);
}

/** GB/s (10^9 bytes) for `streams` parallel downloads of BULK_BYTES in total. */
async function bulk(port: number, streams: number): Promise<number> {
  const per = Math.floor(BULK_BYTES / streams);
  const started = performance.now();
  const received = await Promise.all(
    Array.from(
      { length: streams },
      () =>
        new Promise<number>((resolve, reject) => {
          let n = 0;
          const s = connect(port, '127.0.0.1', () => s.write(`${per}\n`));
          s.on('data', (d: Buffer) => (n += d.length));
          s.on('end', () => resolve(n));
          s.on('error', reject);
        }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const total = received.reduce((a, b) => a + b, 0);
  if (total !== per * streams) throw new Error(`bulk: got ${total} of ${per * streams} bytes`);
  return total / seconds / 1e9;
}

/** One new connection with a small request and response; resolves with its duration in ms. */
function oneRequest(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.0\r\n\r\n'));
    s.on('data', () => undefined);
    s.on('end', () => resolve(performance.now() - t0));
    s.on('error', reject);
  });
}

/** Completed connections per second with RATE_CONCURRENCY clients looping for RATE_MS. */
async function connectionRate(port: number): Promise<{ rate: number; errors: number }> {
  const deadline = performance.now() + RATE_MS;
  let done = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: RATE_CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        try {
          await oneRequest(port);
          done++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { rate: done / ((performance.now() - started) / 1000), errors };
}

/** p50/p99 (ms) of new-connection request times at LATENCY_RPS for LATENCY_MS. */
async function latency(port: number): Promise<{ p50: number; p99: number }> {
  const total = Math.round((LATENCY_RPS * LATENCY_MS) / 1000);
  const times: number[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / LATENCY_RPS;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(oneRequest(port).then((ms) => void times.push(ms)));
  }
  await Promise.all(pending);
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  return { p50: at(0.5), p99: at(0.99) };
}

interface Sample {
  bulk1: number;
  bulk16: number;
  rate: number;
  rateErrors: number;
  p50: number;
  p99: number;
  /** Proxy CPU seconds per GB relayed (16 streams), and microseconds per connection. */
  cpuPerGB: number;
  cpuPerConn: number;
}

let proxiedConnections = 0;

async function measure(name: string, ports: Ports): Promise<Sample> {
  const bulk1 = await withTimeout(bulk(ports.bulk, 1), `${name} bulk x1`);
  let cpu = cpuSeconds(ports.pid);
  const bulk16 = await withTimeout(bulk(ports.bulk, 16), `${name} bulk x16`);
  const cpuPerGB = (cpuSeconds(ports.pid) - cpu) / (BULK_BYTES / 1e9);
  cpu = cpuSeconds(ports.pid);
  const r = await withTimeout(connectionRate(ports.rr), `${name} connection rate`);
  const cpuPerConn = ((cpuSeconds(ports.pid) - cpu) / Math.max(1, r.rate * (RATE_MS / 1000))) * 1e6;
  await new Promise((res) => setTimeout(res, 200));
  const l = await withTimeout(latency(ports.rr), `${name} latency`);
  const s = { bulk1, bulk16, rate: r.rate, rateErrors: r.errors, p50: l.p50, p99: l.p99, cpuPerGB, cpuPerConn };
  if (name === 'userspace') proxiedConnections += 17 + Math.round(r.rate * (RATE_MS / 1000)) + Math.round((LATENCY_RPS * LATENCY_MS) / 1000);
  console.log(
    `${name.padEnd(18)} bulk x1 ${bulk1.toFixed(2)} GB/s  x16 ${bulk16.toFixed(2)} GB/s  ${Math.round(s.rate)} conn/s (${s.rateErrors} err)  p50 ${s.p50.toFixed(3)} ms  p99 ${s.p99.toFixed(3)} ms  cpu ${s.cpuPerGB.toFixed(2)} s/GB ${Math.round(s.cpuPerConn)} us/conn`,
  );
  return s;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

function summarize(samples: Sample[]): Sample {
  return {
    bulk1: median(samples.map((s) => s.bulk1)),
    bulk16: median(samples.map((s) => s.bulk16)),
    rate: median(samples.map((s) => s.rate)),
    rateErrors: samples.reduce((a, s) => a + s.rateErrors, 0),
    p50: median(samples.map((s) => s.p50)),
    p99: median(samples.map((s) => s.p99)),
    cpuPerGB: median(samples.map((s) => s.cpuPerGB)),
    cpuPerConn: median(samples.map((s) => s.cpuPerConn)),
  };
}

function version(cmd: string, argv: string[]): string {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

interface Held {
  fds: number;
  resources: Record<string, number>;
  rssBytes: number;
  heapUsedBytes: number;
}

/** Descriptors (from /proc), libuv handles and timers, and RSS of the proxy process. */
async function held(child: ChildProcess, pid: number | undefined, lines: AsyncIterator<string>): Promise<Held> {
  child.stdin!.write('resources\n');
  const next = await withTimeout(lines.next(), 'proxy resources');
  const { resources, rssBytes, heapUsedBytes } = JSON.parse(next.value as string) as Omit<Held, 'fds'>;
  return { fds: openFds(pid), resources, rssBytes, heapUsedBytes };
}

/** A connection the client gives up on right after connecting (an error path of the proxy). */
function abortedRequest(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.resetAndDestroy());
    s.on('error', () => undefined);
    s.on('close', () => resolve());
  });
}

/** N connections (1 in 50 aborted) through the proxy; true when it holds no more than before. */
async function runLeakCheck(child: ChildProcess, proxy: Ports, n: number): Promise<boolean> {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const WARM_UP = 2000; // pools, JIT, lazy handles, metric series: one-off growth before the baseline
  for (let i = 0; i < WARM_UP; i += RATE_CONCURRENCY) await Promise.all(Array.from({ length: RATE_CONCURRENCY }, () => oneRequest(proxy.rr)));
  await new Promise((r) => setTimeout(r, 500));
  const before = await held(child, proxy.pid, lines);
  const started = performance.now();
  let next = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: RATE_CONCURRENCY }, async () => {
      while (next < n) {
        const i = next++;
        try {
          await withTimeout(i % 50 === 49 ? abortedRequest(proxy.rr) : oneRequest(proxy.rr).then(() => undefined), 'leak-check connection');
        } catch {
          errors++;
        }
        if (i % 10_000 === 9_999) console.log(`${i + 1} connections, ${Math.round((performance.now() - started) / 1000)} s`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 2000)); // aborted relays finish closing
  const after = await held(child, proxy.pid, lines);
  const kinds = [...new Set([...Object.keys(before.resources), ...Object.keys(after.resources)])].sort();
  const grew = kinds.filter((k) => (after.resources[k] ?? 0) > (before.resources[k] ?? 0));
  // Live JS heap after a full GC: a per-connection leak of even 64 bytes shows at these counts.
  const heapGrowthPerConnection = (after.heapUsedBytes - before.heapUsedBytes) / n;
  const ok = after.fds <= before.fds && grew.length === 0 && heapGrowthPerConnection < 64;
  const md = [
    '# Userspace proxy: leak check',
    '',
    `Produced by \`bench/userspace.ts\` (\`cd bench && node --conditions=@kube-proxy-ts/source --import tsx userspace.ts ${args.join(' ')}\`) on ${new Date().toISOString()}.`,
    '',
    `Machine: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}, Node ${process.version}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end.`,
    '',
    `${n} connections through the userspace proxy's TCP listener (${RATE_CONCURRENCY} clients at a time; a small request and response each; every 50th reset by the client right after connecting) in ${seconds.toFixed(1)} s, ${errors} client errors. Measured in the proxy process after 2000 warm-up connections and again 2 s after the last connection:`,
    '',
    '| | before | after |',
    '|---|---:|---:|',
    `| open descriptors | ${before.fds} | ${after.fds} |`,
    ...kinds.map((k) => `| ${k} | ${before.resources[k] ?? 0} | ${after.resources[k] ?? 0} |`),
    `| JS heap in use after a full GC | ${(before.heapUsedBytes / 2 ** 20).toFixed(1)} MiB | ${(after.heapUsedBytes / 2 ** 20).toFixed(1)} MiB |`,
    `| RSS | ${(before.rssBytes / 2 ** 20).toFixed(1)} MiB | ${(after.rssBytes / 2 ** 20).toFixed(1)} MiB |`,
    '',
    ok
      ? `Nothing was left over (heap ${heapGrowthPerConnection >= 0 ? '+' : ''}${heapGrowthPerConnection.toFixed(1)} bytes per connection; the check fails at 64).`
      : `Left over: ${[after.fds > before.fds ? 'descriptors' : '', ...grew, heapGrowthPerConnection >= 64 ? `heap (+${heapGrowthPerConnection.toFixed(0)} bytes per connection)` : ''].filter(Boolean).join(', ')}.`,
    '',
  ].join('\n');
  writeFileSync(join(HERE, 'results', 'userspace-leak.md'), md);
  console.log(`\n${md}`);
  return ok;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kpts-bench-userspace-'));
  const loadBefore = loadavg();
  try {
    const upstream = startChild(process.execPath, ['-e', UPSTREAM]);
    const up = await firstJsonLine<Ports>(upstream, 'upstream');
    const proxyChild = startChild(process.execPath, ['--expose-gc', '--conditions=@kube-proxy-ts/source', '--import', 'tsx', join(HERE, 'userspace-proxy.ts'), String(up.bulk), String(up.rr)]);
    const proxy = { ...(await firstJsonLine<Ports>(proxyChild, 'userspace proxy')), pid: proxyChild.pid };
    if (leakCheck > 0) {
      process.exitCode = (await runLeakCheck(proxyChild, proxy, leakCheck)) ? 0 : 1;
      return;
    }
    const haproxy1 = await startHAProxy(dir, up, 1);
    const haproxy2 = await startHAProxy(dir, up, 2);
    const paths: Array<[string, Ports]> = [
      ['direct', up],
      ['userspace', proxy],
      ['haproxy (1 thread)', haproxy1],
      ['haproxy (2 threads)', haproxy2],
    ];
    const samples = new Map<string, Sample[]>(paths.map(([n]) => [n, []]));
    const fdsBefore = openFds(proxy.pid);
    for (let round = 1; round <= rounds; round++) {
      console.log(`round ${round}/${rounds}`);
      for (const [name, ports] of paths) samples.get(name)!.push(await measure(name, ports));
    }
    const loadAfter = loadavg();
    await new Promise((r) => setTimeout(r, 500)); // the last connections finish closing
    const fds = { before: fdsBefore, after: openFds(proxy.pid), connections: proxiedConnections };
    const result = new Map([...samples].map(([n, s]) => [n, summarize(s)]));
    writeReport(result, { loadBefore, loadAfter }, fds);
  } finally {
    for (const c of children) c.stdin?.end();
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

function writeReport(
  result: Map<string, Sample>,
  load: { loadBefore: number[]; loadAfter: number[] },
  fds: { before: number; after: number; connections: number },
): void {
  const direct = result.get('direct')!;
  const us = result.get('userspace')!;
  const row = (name: string, s: Sample) =>
    `| ${name} | ${s.bulk1.toFixed(2)} | ${s.bulk16.toFixed(2)} | ${Math.round(s.rate)}${s.rateErrors ? ` (${s.rateErrors} errors)` : ''} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${name === 'direct' ? '-' : `${(s.p50 - direct.p50).toFixed(3)} / ${(s.p99 - direct.p99).toFixed(3)}`} | ${name === 'direct' ? '-' : `${s.cpuPerGB.toFixed(2)} / ${Math.round(s.cpuPerConn)}`} |`;
  const ratio = (name: string) => {
    const h = result.get(name)!;
    return `| userspace / ${name} | ${(us.bulk1 / h.bulk1).toFixed(2)}x | ${(us.bulk16 / h.bulk16).toFixed(2)}x | ${(us.rate / h.rate).toFixed(2)}x | ${(us.cpuPerGB / h.cpuPerGB).toFixed(2)}x | ${(us.cpuPerConn / h.cpuPerConn).toFixed(2)}x |`;
  };
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' ');
  const md = [
    '# Userspace proxy vs direct vs HAProxy (loopback)',
    '',
    `Produced by \`bench/userspace.ts\` (\`cd bench && node --conditions=@kube-proxy-ts/source --import tsx userspace.ts${args.length ? ` ${args.join(' ')}` : ''}\`) on ${new Date().toISOString()}.`,
    '',
    `Machine: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}, Node ${process.version}, ${version('haproxy', ['-v'])}.`,
    `Load average ${fmt(load.loadBefore)} before, ${fmt(load.loadAfter)} after, on ${cpus().length} cores. Treat the numbers as rough and the ratios as the figure of merit.`,
    '',
    `Medians of ${rounds} round(s); each round runs every path in turn against the same upstream process. Bulk: ${BULK_BYTES / 1024 / 1024} MiB downloaded through one stream, then through 16 streams (GB/s = 10^9 bytes/s). Connection rate: ${RATE_CONCURRENCY} clients opening a connection, sending a small request and reading a small response, for ${RATE_MS / 1000} s. Latency: new connections at a fixed ${LATENCY_RPS}/s for ${LATENCY_MS / 1000} s, time from connect() to the end of the response; "added" is the difference to the direct path. The load generator and the upstream server are Node processes on the same 2 cores, so the direct path is a ceiling for every proxy. CPU: user + system time of the proxy process (from /proc) during the 16-stream bulk run and the connection-rate run, which is less sensitive to other load than the rates; the kernel's loopback TCP work done in the proxy's system calls counts towards it.`,
    '',
    '| path | bulk x1 GB/s | bulk x16 GB/s | connections/s | p50 ms | p99 ms | added p50 / p99 ms | proxy CPU s/GB / µs per connection |',
    '|---|---|---|---|---|---|---|---|',
    ...[...result].map(([n, s]) => row(n, s)),
    '',
    '| ratio | bulk x1 | bulk x16 | connections/s | CPU per GB | CPU per connection |',
    '|---|---|---|---|---|---|',
    ratio('haproxy (1 thread)'),
    ratio('haproxy (2 threads)'),
    '',
    'Targets: >= 0.8x HAProxy bulk throughput, >= 0.5x its connection rate.',
    '',
    `Descriptors of the userspace proxy process: ${fds.before} before the rounds, ${fds.after} after about ${fds.connections} proxied connections.`,
    '',
  ].join('\n');
  writeFileSync(join(HERE, 'results', 'userspace.md'), md);
  console.log(`\n${md}`);
}

await main();
