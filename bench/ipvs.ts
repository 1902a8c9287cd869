// IPVS backend sync times at 1k / 5k / 10k ClusterIP services x 10 endpoints. Runs INSIDE the
// IPVS test VM (see ipvs-vm.ts, which boots it), in a network namespace it creates and deletes.
// Sizes grow step by step and stop after a full sync slower than --step-limit seconds.
//
//   (in the VM) node ipvs-bench.mjs [--sizes 1000,5000,10000] [--step-limit 60]

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  defaultProxyConfig,
  emptyChangeSet,
  realClock,
  type CommandRunner,
  type Endpoint,
  type ProxyState,
  type ServicePort,
  type ServicePortKey,
} from '@kube-proxy-ts/core';
import { endpointRecord, servicePortRecord } from '@kube-proxy-ts/core/fixtures';
import { createExecRunner } from '@kube-proxy-ts/netfilter';
import ipvsBackendFactory from '@kube-proxy-ts/backend-ipvs';
import { testContext } from '@kube-proxy-ts/testing';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const sizes = arg('sizes', '1000,5000,10000').split(',').map(Number);
const stepLimitMs = Number(arg('step-limit', '60')) * 1000;
const NODE_IP = '192.168.50.1';

function servicePort(i: number): ServicePort {
  return servicePortRecord({
    name: { namespace: 'bench', name: `svc-${i}`, port: 'http', protocol: 'TCP' },
    clusterIP: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    targetPort: 8080,
  });
}

function endpoint(ip: string): Endpoint {
  return endpointRecord(ip, 8080, { nodeName: 'node2' });
}

function buildState(n: number, changedEndpoint = false): ProxyState {
  const services = new Map<ServicePortKey, ServicePort>();
  const endpoints = new Map<ServicePortKey, Endpoint[]>();
  for (let i = 0; i < n; i++) {
    const sp = servicePort(i);
    services.set(sp.key, sp);
    const eps = Array.from({ length: 10 }, (_, e) => endpoint(`10.${128 + (i >> 12)}.${(i >> 4) & 255}.${((i & 15) << 4) + e}`));
    if (changedEndpoint && i === 0) eps[9] = endpoint('10.250.0.1');
    endpoints.set(sp.key, eps);
  }
  return { ipFamily: 'IPv4', services, endpoints, node: { name: 'node1', labels: {}, zone: undefined, podCIDRs: [], addresses: [NODE_IP], eligible: true } };
}

function sh(argv: string[]): void {
  execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 60_000 });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function runSize(n: number): Promise<{ full: number; change: number; noop: number; stats: Record<string, number> | undefined }> {
  const netns = `kpts-ipvsbench-${randomBytes(3).toString('hex')}`;
  sh(['ip', 'netns', 'add', netns]);
  try {
    sh(['ip', '-n', netns, 'link', 'set', 'lo', 'up']);
    sh(['ip', '-n', netns, 'link', 'add', 'eth0', 'type', 'dummy']);
    sh(['ip', '-n', netns, 'address', 'add', `${NODE_IP}/24`, 'dev', 'eth0']);
    sh(['ip', '-n', netns, 'link', 'set', 'eth0', 'up']);
    const exec = createExecRunner({ netns });
    const timings: string[] = [];
    // Records how long each command took, to show where a sync's time goes.
    const runner: CommandRunner = {
      async run(cmd, args, options) {
        const t = performance.now();
        try {
          return await exec.run(cmd, args, options);
        } finally {
          timings.push(`${cmd} ${args.slice(0, 2).join(' ')} ${((performance.now() - t) / 1000).toFixed(1)}s`);
        }
      },
    };
    const backend = ipvsBackendFactory({ ipFamily: 'IPv4', config: defaultProxyConfig() });
    const ctx = testContext({ runner, clock: realClock, node: buildState(0).node });
    await backend.start(ctx);
    const state = buildState(n);
    timings.length = 0;
    const [full, tFull] = await timed(() => backend.sync(state, emptyChangeSet()));
    console.log(`  full sync commands: ${timings.join(', ')}`);
    if (!full.ok) throw new Error(`full sync failed: ${full.error?.message}`);
    const [noop, tNoop] = await timed(() => backend.sync(state, emptyChangeSet()));
    if (!noop.ok) throw new Error(`no-op sync failed: ${noop.error?.message}`);
    timings.length = 0;
    const [change, tChange] = await timed(() => backend.sync(buildState(n, true), emptyChangeSet()));
    console.log(`  one-endpoint change commands: ${timings.join(', ')}`);
    if (!change.ok) throw new Error(`one-endpoint sync failed: ${change.error?.message}`);
    const [, tCleanup] = await timed(() => backend.cleanup(ctx));
    console.log(`  cleanup ${(tCleanup / 1000).toFixed(1)} s; one-endpoint change stats ${JSON.stringify(change.stats)}`);
    return { full: tFull, change: tChange, noop: tNoop, stats: full.stats };
  } finally {
    sh(['ip', 'netns', 'del', netns]);
  }
}

async function main(): Promise<void> {
  console.log(`ipvs bench: sizes ${sizes.join(', ')} x 10 endpoints, node ${process.version}, ${new Date().toISOString()}`);
  const rows: string[] = [];
  for (const n of sizes) {
    const r = await runSize(n);
    const row = `| ${n} | ${(r.full / 1000).toFixed(1)} s | ${(r.change / 1000).toFixed(2)} s | ${(r.noop / 1000).toFixed(2)} s |`;
    rows.push(row);
    console.log(`KPTS-BENCH ${row}  full-sync stats ${JSON.stringify(r.stats)}`);
    if (r.full > stepLimitMs) {
      console.log(`KPTS-BENCH stopping: the full sync of ${n} took more than ${stepLimitMs / 1000} s`);
      break;
    }
  }
  console.log(['KPTS-BENCH-TABLE', '| services x 10 endpoints | full sync | one-endpoint change | no-op sync |', '|---:|---:|---:|---:|', ...rows].join('\n'));
}

main().catch((err) => {
  console.log(`KPTS-BENCH failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
