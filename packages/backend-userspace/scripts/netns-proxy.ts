// Runs the userspace backend as a process of its own, for end-to-end tests: started inside a
// test's node namespace (`ip netns exec NS node --conditions=@kube-proxy-ts/source --import tsx
// netns-proxy.ts NS`), so that its listeners and its rules live there. Reads one JSON request per
// line on stdin and answers one JSON line on stdout:
//   {"op":"start","config":{...},"node":V1Node,"options":{"raiseFileLimit":false,"limits":{...}}}
//   {"op":"apply","services":[...],"slices":[...]}
//   {"op":"inspect"}  {"op":"connections","id":KEY}  {"op":"metrics"}  {"op":"cleanup"}  {"op":"stop"}
// Logs go to stderr as JSON lines.

import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { ProxyStateTracker, defaultProxyConfig, realClock, type BackendContext, type ExplainPacket, type Logger, type ProxyConfig } from '@kube-proxy-ts/core';
import { createExecRunner } from '@kube-proxy-ts/netfilter';
import { UserspaceBackend, type UserspaceBackendOptions } from '../src/index.js';

type Obj = { metadata?: { namespace?: string; name?: string } };

/** Runs only inside the named test namespace given as the first argument (kpts-...). */
function requireTestNamespace(): void {
  const name = process.argv[2] ?? '';
  const inode = (path: string) => {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  };
  let inside = false;
  try {
    inside = name.startsWith('kpts-') && inode(`/run/netns/${name}`) === inode('/proc/self/ns/net');
  } catch {
    inside = false;
  }
  if (!inside) {
    process.stderr.write(`netns-proxy: not inside the test namespace ${JSON.stringify(name)}; refusing to touch this one\n`);
    process.exit(3);
  }
}

function stderrLogger(bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (obj: object | string, msg?: string) => {
    const fields = typeof obj === 'string' ? { msg: obj } : { ...obj, msg };
    process.stderr.write(`${JSON.stringify({ level, ...bindings, ...fields })}\n`);
  };
  return { debug: () => undefined, info: write('info'), warn: write('warn'), error: write('error'), child: (b) => stderrLogger({ ...bindings, ...b }) };
}

requireTestNamespace();

let backend: UserspaceBackend | undefined;
let ctx: BackendContext | undefined;
const registry = new Registry();
let tracker: ProxyStateTracker | undefined;
const services = new Map<string, Obj>();
const slices = new Map<string, Obj>();
const key = (o: Obj) => `${o.metadata?.namespace}/${o.metadata?.name}`;

/** Tells the tracker what changed between the objects it saw and `next`, as an informer would. */
function reconcile(seen: Map<string, Obj>, next: Obj[], on: { add(o: Obj): void; update(a: Obj, b: Obj): void; del(o: Obj): void }) {
  const wanted = new Map(next.map((o) => [key(o), o]));
  for (const [k, o] of seen) {
    if (wanted.has(k)) continue;
    on.del(o);
    seen.delete(k);
  }
  for (const [k, o] of wanted) {
    const prev = seen.get(k);
    if (!prev) on.add(o);
    else if (JSON.stringify(prev) !== JSON.stringify(o)) on.update(prev, o);
    seen.set(k, o);
  }
}

async function handle(req: Record<string, unknown>): Promise<unknown> {
  switch (req.op) {
    case 'start': {
      const config: ProxyConfig = { ...defaultProxyConfig(), ...(req.config as Partial<ProxyConfig>), mode: 'userspace' };
      const node = req.node as Parameters<ProxyStateTracker['onNodeAdd']>[0];
      tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: node.metadata!.name! });
      tracker.onNodeAdd(node);
      tracker.onNodeSynced();
      tracker.onServicesSynced();
      tracker.onEndpointSlicesSynced();
      const options = (req.options ?? {}) as Pick<UserspaceBackendOptions, 'raiseFileLimit' | 'limits'>;
      backend = new UserspaceBackend({ ipFamily: 'IPv4', config, ...options });
      const addresses = (node.status?.addresses ?? []).map((a) => a.address);
      ctx = {
        logger: stderrLogger(),
        metrics: registry,
        node: { name: node.metadata!.name!, labels: {}, zone: undefined, podCIDRs: [], addresses, eligible: true },
        runner: createExecRunner(),
        clock: realClock,
      };
      await backend.start(ctx);
      return { ok: true };
    }
    case 'apply': {
      if (!backend || !tracker) throw new Error('start first');
      const t = tracker;
      type Svc = Parameters<ProxyStateTracker['onServiceAdd']>[0];
      type Slice = Parameters<ProxyStateTracker['onEndpointSliceAdd']>[0];
      reconcile(services, req.services as Obj[], {
        add: (o) => t.onServiceAdd(o as Svc),
        update: (a, b) => t.onServiceUpdate(a as Svc, b as Svc),
        del: (o) => t.onServiceDelete(o as Svc),
      });
      reconcile(slices, req.slices as Obj[], {
        add: (o) => t.onEndpointSliceAdd(o as Slice),
        update: (a, b) => t.onEndpointSliceUpdate(a as Slice, b as Slice),
        del: (o) => t.onEndpointSliceDelete(o as Slice),
      });
      const { state, changes } = t.checkpoint();
      const result = await backend.sync(state, changes);
      return { ok: result.ok, error: result.error?.message, stats: result.stats };
    }
    case 'explain':
      return { ok: true, explanation: await backend?.explain(req.packet as ExplainPacket, ctx!.node) };
    case 'inspect':
      return { ok: true, picture: await backend?.inspect() };
    case 'connections':
      return { ok: true, active: backend?.activeConnections(String(req.id)) };
    case 'metrics':
      return { ok: true, text: await registry.metrics() };
    case 'cleanup':
      if (ctx) await backend?.cleanup(ctx);
      return { ok: true };
    case 'stop':
      await backend?.stop();
      return { ok: true };
    default:
      throw new Error(`unknown op ${String(req.op)}`);
  }
}

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let answer: unknown;
    try {
      answer = await handle(JSON.parse(line) as Record<string, unknown>);
    } catch (err) {
      answer = { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  });
});
lines.on('close', () => {
  void queue.then(async () => {
    await backend?.stop();
    process.exit(0);
  });
});
