// Benchmark of the iptables backend on the real kernel, inside a network namespace it creates:
// full sync of N services x 10 endpoints (compute and apply), then a partial sync after one
// endpoint changed, a service added, and the full sync of a restarted daemon over the filled table. Sizes grow step by step and stop when a step takes more than 60 s.
//
//   node --conditions=@kube-proxy-ts/source --import tsx bench/iptables.ts [sizes=1000,5000,10000] [flavour=nft] [--keep] [--restart-per-tx N]
//
// --keep leaves the last size's namespace and rules in place (its name is printed) for strace or
// perf on single transactions; delete it with `ip netns del NAME`.
// Needs root, iptables (nft and/or legacy) and iproute2. Never touches the host's namespace.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  defaultProxyConfig,
  type ChangeSet,
  type Endpoint,
  type ProxyState,
  type ServicePort,
  type ServicePortKey,
} from '@kube-proxy-ts/core';
import { IptablesBackend, computeRules, type RuleOptions } from '@kube-proxy-ts/backend-iptables';
import { createExecRunner } from '@kube-proxy-ts/netfilter';
import { changeSetRecord, endpointRecord, nodeInfo, servicePortRecord, testContext } from '@kube-proxy-ts/testing';

const ENDPOINTS_PER_SERVICE = 10;
const STEP_LIMIT_MS = 60_000;
const keep = process.argv.includes('--keep');
// --restart-per-tx N: the restarted daemon writes N services per transaction instead of the
// backend's own choice (how POPULATED_LIMITS was sized).
const perTxAt = process.argv.indexOf('--restart-per-tx');
const restartPerTx = perTxAt > 0 ? Number(process.argv[perTxAt + 1]) : undefined;
const positional = process.argv.slice(2).filter((a, i, all) => a !== '--keep' && a !== '--restart-per-tx' && all[i - 1] !== '--restart-per-tx');
const sizes = (positional[0] ?? '1000,5000,10000').split(',').map(Number);
const flavour = (positional[1] ?? 'nft') as 'nft' | 'legacy';

const node = nodeInfo({ name: 'bench-node', podCIDRs: ['10.0.0.0/16'], addresses: ['192.168.50.1'] });

function servicePort(i: number): ServicePort {
  const nodePort = i % 4 === 0 ? 30000 + (i % 2700) : 0;
  return servicePortRecord({
    name: { namespace: `ns${i % 100}`, name: `svc${i}`, port: 'http', protocol: 'TCP' },
    type: nodePort ? 'NodePort' : 'ClusterIP',
    clusterIP: `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    nodePort,
    targetPort: 8080,
  });
}

function endpointsOf(i: number, generation = 0): Endpoint[] {
  return Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, e) => endpointRecord(`10.${1 + ((i * ENDPOINTS_PER_SERVICE + e) >> 16)}.${((i * ENDPOINTS_PER_SERVICE + e) >> 8) & 255}.${(i * ENDPOINTS_PER_SERVICE + e) & 255}`, 8080 + generation, { nodeName: 'other' }));
}

function makeState(n: number): { state: ProxyState; services: Map<ServicePortKey, ServicePort>; endpoints: Map<ServicePortKey, readonly Endpoint[]> } {
  const services = new Map<ServicePortKey, ServicePort>();
  const endpoints = new Map<ServicePortKey, readonly Endpoint[]>();
  for (let i = 0; i < n; i++) {
    const sp = servicePort(i);
    services.set(sp.key, sp);
    endpoints.set(sp.key, endpointsOf(i));
  }
  return { state: { ipFamily: 'IPv4', services, endpoints, node }, services, endpoints };
}

function changeSet(keys: ServicePortKey[]): ChangeSet {
  return changeSetRecord({ servicePorts: new Set(keys) });
}

const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };
const clock = { now: () => performance.now(), setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout) };

function countRules(netns: string): { nat: number; filter: number } {
  const out = (table: string) => execFileSync('ip', ['netns', 'exec', netns, `iptables-${flavour}-save`, '-t', table], { timeout: 120_000, maxBuffer: 1 << 30 }).toString();
  const count = (text: string) => text.split('\n').filter((l) => l.startsWith('-A ')).length;
  return { nat: count(out('nat')), filter: count(out('filter')) };
}

async function benchSize(n: number): Promise<number> {
  const netns = `kpts-iptbench-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', netns], { timeout: 15_000 });
  try {
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up'], { timeout: 15_000 });
    const config = defaultProxyConfig();
    config.clusterCIDR = '10.0.0.0/8';
    const backend = new IptablesBackend({ ipFamily: 'IPv4', config, flavour, commandTimeoutMs: 90_000 });
    const ctx = { ...testContext({ logger: silent, node, clock }), runner: createExecRunner({ netns }) };
    await backend.start(ctx);
    const { state, services, endpoints } = makeState(n);

    // The first sync, as a starting daemon runs it (nothing computed before).
    let t = performance.now();
    const full = await backend.sync(state, changeSet([...services.keys()]));
    const fullMs = performance.now() - t;
    if (!full.ok) throw new Error(`full sync failed: ${full.error?.message}`);

    // Compute alone (what a dry run costs; chain names are cached by then).
    const options: RuleOptions = { masqueradeAll: false, masqueradeBit: 14, localDetector: { kind: 'cidr', cidr: '10.0.0.0/8' }, localhostNodePorts: true, randomFully: true, conntrackTCPLiberal: false, nodePortsOnAllAddresses: true, nodePortIPs: [], nodeIP: '192.168.50.1' };
    t = performance.now();
    computeRules(state, options);
    const computeMs = performance.now() - t;

    // One endpoint of one service changes.
    const key = [...services.keys()][Math.floor(n / 2)]!;
    const changed = [...endpoints.get(key)!];
    changed[3] = endpointRecord('10.250.0.1', 8080, { nodeName: 'other' });
    endpoints.set(key, changed);
    t = performance.now();
    const partial = await backend.sync({ ...state, endpoints }, changeSet([key]));
    const partialMs = performance.now() - t;
    if (!partial.ok || partial.full) throw new Error(`partial sync failed: ${partial.error?.message ?? 'was full'}`);

    // A service added (KUBE-SERVICES patched, not rewritten).
    const extra = servicePort(n + 1);
    services.set(extra.key, extra);
    endpoints.set(extra.key, endpointsOf(n + 1));
    t = performance.now();
    const added = await backend.sync({ ...state, services, endpoints }, changeSet([extra.key]));
    const addMs = performance.now() - t;
    if (!added.ok) throw new Error(`add sync failed: ${added.error?.message}`);

    // A restarted daemon: a new backend finds the table full and rewrites everything once.
    const restartLimits = restartPerTx ? { limits: { maxServicesPerTransaction: restartPerTx, maxLinesPerTransaction: restartPerTx * 50 } } : {};
    const restarted = new IptablesBackend({ ipFamily: 'IPv4', config, flavour, commandTimeoutMs: 90_000, ...restartLimits });
    await restarted.start({ ...testContext({ logger: silent, node, clock }), runner: createExecRunner({ netns }) });
    t = performance.now();
    const resync = await restarted.sync({ ...state, services, endpoints }, changeSet([...services.keys()]));
    const resyncMs = performance.now() - t;
    if (!resync.ok || !resync.full) throw new Error(`restart sync failed: ${resync.error?.message ?? 'was partial'}`);

    // The floor: the smallest transaction on a table this size (rewrite KUBE-MARK-MASQ as it is).
    t = performance.now();
    execFileSync('ip', ['netns', 'exec', netns, `iptables-${flavour}-restore`, '-w', '--noflush', '--counters'], { input: '*nat\n:KUBE-MARK-MASQ - [0:0]\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000\nCOMMIT\n', timeout: 60_000 });
    const floorMs = performance.now() - t;
    // The same without a rule: only a chain created and deleted. Adding any rule makes the kernel
    // validate every chain reachable from the base chains at commit; chains alone do not.
    t = performance.now();
    execFileSync('ip', ['netns', 'exec', netns, `iptables-${flavour}-restore`, '-w', '--noflush'], { input: '*nat\n-N KUBE-BENCH-FLOOR\n-X KUBE-BENCH-FLOOR\nCOMMIT\n', timeout: 60_000 });
    const chainOnlyMs = performance.now() - t;

    const rules = countRules(netns);
    const s = full.stats!;
    console.log(
      JSON.stringify({
        flavour,
        services: n,
        endpoints: n * ENDPOINTS_PER_SERVICE,
        dryRunComputeMs: Math.round(computeMs),
        fullSyncMs: Math.round(fullMs),
        fullComputeMs: Math.round(s.computeMs ?? 0),
        fullApplyMs: Math.round(s.applyMs ?? 0),
        transactions: s.transactions,
        payloadBytes: s.payloadBytes,
        partialSyncMs: Math.round(partialMs),
        partialComputeMs: Math.round(partial.stats?.computeMs ?? 0),
        partialApplyMs: Math.round(partial.stats?.applyMs ?? 0),
        partialPayloadBytes: partial.stats?.payloadBytes,
        addServiceSyncMs: Math.round(addMs),
        restartFullSyncMs: Math.round(resyncMs),
        restartApplyMs: Math.round(resync.stats?.applyMs ?? 0),
        restartTransactions: resync.stats?.transactions,
        floorTransactionMs: Math.round(floorMs),
        chainOnlyTransactionMs: Math.round(chainOnlyMs),
        kernelRules: rules,
      }),
    );
    if (keep && n === sizes[sizes.length - 1]) {
      console.log(`kept namespace ${netns} with the ${n}-service table`);
      return fullMs;
    }
    await backend.cleanup(ctx);
    return fullMs;
  } finally {
    if (!(keep && n === sizes[sizes.length - 1])) execFileSync('ip', ['netns', 'del', netns], { timeout: 60_000 });
  }
}

if (process.getuid?.() !== 0) {
  console.log('iptables bench skipped: needs root');
} else {
  for (const n of sizes) {
    const ms = await benchSize(n);
    if (ms > STEP_LIMIT_MS) {
      console.log(`stopping: ${n} services took ${Math.round(ms)} ms (> ${STEP_LIMIT_MS} ms)`);
      break;
    }
  }
}
