// The proxy side of bench/userspace.ts: runs the userspace backend in a process of its own (as
// the daemon would), listening on 127.0.0.1 with two TCP services whose endpoints are the
// bench's upstream servers. No rules are written (the runner is a no-op): the bench measures the
// data path. Usage: node --conditions=@kube-proxy-ts/source --import tsx userspace-proxy.ts BULK_PORT RR_PORT
// Prints {"bulk":PORT,"rr":PORT} once listening; answers "resources" lines on stdin; exits when stdin closes.

import { createInterface } from 'node:readline';
import { defaultProxyConfig, realClock, type Logger } from '@kube-proxy-ts/core';
import { UserspaceBackend } from '@kube-proxy-ts/backend-userspace';
import { ClusterFeed, endpointSlice, node, service, testContext } from '@kube-proxy-ts/testing';

const [bulkPort, rrPort] = process.argv.slice(2).map(Number);
if (!bulkPort || !rrPort) throw new Error('usage: userspace-proxy.ts BULK_PORT RR_PORT');

const quiet: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (o, m) => process.stderr.write(`${JSON.stringify(o)} ${m ?? ''}\n`),
  error: (o, m) => process.stderr.write(`${JSON.stringify(o)} ${m ?? ''}\n`),
  child: () => quiet,
};

const benchService = (name: string, clusterIP: string) => service('bench', name, { clusterIP, ports: [{ name: 'tcp', port: 80 }] });
const benchSlice = (name: string, port: number) => endpointSlice('bench', name, `${name}-1`, { endpoints: ['127.0.0.1'], ports: [{ name: 'tcp', port }] });

const feed = new ClusterFeed({ node: node('bench', { addresses: ['127.0.0.1'] }) });
feed.upsert(benchService('bulk', '10.96.0.1'), benchService('rr', '10.96.0.2'), benchSlice('bulk', bulkPort), benchSlice('rr', rrPort));

const backend = new UserspaceBackend({ ipFamily: 'IPv4', config: { ...defaultProxyConfig(), mode: 'userspace', bindAddress: '127.0.0.1' } });
const noRules = { run: async () => ({ code: 0, stdout: '', stderr: '' }) };
await backend.start(testContext({ logger: quiet, node: { name: 'bench', addresses: ['127.0.0.1'] }, runner: noRules, clock: realClock }));
const { state, changes } = feed.checkpoint();
const result = await backend.sync(state, changes);
if (!result.ok) throw result.error ?? new Error('sync failed');
process.stdout.write(`${JSON.stringify({ bulk: backend.listenerPort('bench/bulk:tcp/TCP'), rr: backend.listenerPort('bench/rr:tcp/TCP') })}\n`);
// A line "resources" on stdin prints what the process holds (for the bench's leak check).
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'resources') return;
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  (globalThis as { gc?: () => void }).gc?.(); // started with --expose-gc by the bench: count live objects only
  const { rss, heapUsed } = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ resources: counts, rssBytes: rss, heapUsedBytes: heapUsed })}\n`);
});
process.stdin.on('end', () => void backend.stop().then(() => process.exit(0)));
