import { describe, expect, it } from 'vitest';
import { SyncRunner } from '@kube-proxy-ts/core';
import { endpointSlice, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { IptablesBackend } from './backend.js';
import { CANARY_TABLES, checkCanaries } from './canary.js';
import { Cluster, TEST_HOSTNAME, TEST_NODE_IP } from './cluster.test-support.js';

const IPTABLES = 'iptables-nft';
const RESTORE = 'iptables-nft-restore';
const SAVE = 'iptables-nft-save';
const SYNC_PERIOD = 30_000;
const DRIFT = 'kubeproxy_sync_proxy_rules_drift_detected_total';

const isCanaryListing = (args: readonly string[]) => args.includes('-S') && args.includes('KUBE-PROXY-CANARY');

/** Applies a `--noflush` restore payload as the kernel would, to chains and their rules. */
function applyRestore(kernel: Map<string, Map<string, string[]>>, payload: string): void {
  let chains: Map<string, string[]> | undefined;
  for (const line of payload.split('\n')) {
    const [op, chain = '', ...rest] = line.split(' ');
    if (line.startsWith('*')) chains = kernel.get(line.slice(1));
    else if (line.startsWith(':')) chains?.set(line.slice(1).split(' ')[0]!, []);
    else if (op === '-A') chains?.get(chain)?.push(rest.join(' '));
    else if (op === '-I') chains?.set(chain, [rest.slice(1).join(' '), ...(chains.get(chain) ?? [])]);
    else if (op === '-X') chains?.delete(chain);
  }
}

/**
 * A node whose tables hold what the restores wrote (chains only, which is what the canary and
 * the jump listings look at), and that can be flushed as `iptables -t <table> -F; -X` would.
 */
function setUp() {
  const ctx = testContext({ node: { name: TEST_HOSTNAME, addresses: [TEST_NODE_IP] } });
  const kernel = new Map<string, Map<string, string[]>>(CANARY_TABLES.map((t) => [t, new Map()]));
  const { runner, clock } = ctx;
  runner.on(RESTORE, (_args, stdin) => {
    applyRestore(kernel, stdin ?? '');
    clock.advance(200); // a restore takes time: the sync ends after it started
    return { code: 0 };
  });
  runner.on(IPTABLES, (args) => {
    const table = args[args.indexOf('-t') + 1]!;
    return kernel.get(table)?.has('KUBE-PROXY-CANARY') ? { code: 0, stdout: '-N KUBE-PROXY-CANARY\n' } : { code: 1, stderr: 'iptables: No chain/target/match by that name.' };
  }, isCanaryListing);
  const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8', iptables: { syncPeriod: SYNC_PERIOD } }), flavour: 'nft' });
  const cluster = new Cluster().upsert(
    service('ns1', 'svc1', { clusterIP: '172.30.0.1', ports: [{ name: 'p80', port: 80 }] }),
    endpointSlice('ns1', 'svc1', { name: 'svc1-a', endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
  );
  const results: Array<{ at: number; full: boolean; ok: boolean }> = [];
  // The daemon's loop: a sync at least once per syncPeriod, counted from the start of the previous one.
  const loop = new SyncRunner({
    minInterval: 1000,
    maxInterval: SYNC_PERIOD,
    clock,
    run: async () => {
      const at = clock.now();
      const { state, changes } = cluster.checkpoint();
      const r = await backend.sync(state, changes);
      results.push({ at, full: r.full, ok: r.ok });
      return r.ok;
    },
  });
  const flush = (table: string) => kernel.set(table, new Map());
  const drift = async () => (await ctx.metrics.getSingleMetric(DRIFT)?.get())?.values.find((v) => v.labels.ip_family === 'IPv4')?.value;
  const resyncLines = () => ctx.logger.entries.filter((e) => e.msg === 'iptables canary chain deleted; resyncing');
  return { ctx, kernel, backend, loop, results, flush, drift, resyncLines };
}

describe('iptables canary chains', () => {
  it('a flushed and deleted nat table is found at the next periodic sync and rewritten: chains, jumps, canaries', async () => {
    const t = setUp();
    await t.backend.start(t.ctx);
    t.loop.start();
    t.loop.request();
    await t.ctx.clock.advanceAsync(0);
    expect(t.results).toEqual([{ at: 0, full: true, ok: true }]);
    for (const table of CANARY_TABLES) expect(t.kernel.get(table)!.has('KUBE-PROXY-CANARY'), table).toBe(true);
    expect(await t.drift()).toBe(0);

    // iptables -t nat -F; iptables -t nat -X: mangle and filter keep their canaries.
    t.flush('nat');
    t.ctx.runner.reset();
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: SYNC_PERIOD, full: true, ok: true });
    expect(t.resyncLines()).toHaveLength(1);
    expect(t.resyncLines()[0]!.fields).toMatchObject({ tables: ['nat'] });
    expect(await t.drift()).toBe(1);
    // What we wrote is forgotten: nat is read again for leftovers, everything is rewritten.
    expect(t.ctx.runner.callsTo(SAVE).map((c) => c.args)).toEqual([['-t', 'nat']]);
    const nat = t.kernel.get('nat')!;
    expect(nat.get('PREROUTING')).toContain('-m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(nat.get('OUTPUT')).toContain('-m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(nat.get('POSTROUTING')).toContain('-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING');
    expect(nat.get('KUBE-SERVICES')!.some((r) => r.includes('-d 172.30.0.1 ') && r.includes('-j KUBE-SVC-'))).toBe(true);
    expect([...nat.keys()].filter((c) => c.startsWith('KUBE-SEP-'))).toHaveLength(1);
    expect(nat.has('KUBE-PROXY-CANARY')).toBe(true);

    // Repaired: the next periodic sync finds every canary and stays partial, without a word.
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: 2 * SYNC_PERIOD, full: false, ok: true });
    expect(t.resyncLines()).toHaveLength(1);
    expect(await t.drift()).toBe(1);
    await t.loop.stop();
  });

  it('checks at every periodic sync although each starts less than a syncPeriod after the last check ended', async () => {
    const t = setUp();
    await t.backend.start(t.ctx);
    t.loop.start();
    t.loop.request();
    await t.ctx.clock.advanceAsync(0);
    for (let period = 1; period <= 3; period++) {
      t.ctx.runner.reset();
      await t.ctx.clock.advanceAsync(SYNC_PERIOD);
      expect(t.ctx.runner.callsTo(IPTABLES).filter((c) => isCanaryListing(c.args)).map((c) => c.args[2]), `period ${period}`).toEqual(['mangle', 'nat', 'filter']);
    }
    // A burst of partial syncs lists the canaries at most once per half period.
    t.ctx.runner.reset();
    for (let i = 0; i < 5; i++) {
      t.loop.request();
      await t.ctx.clock.advanceAsync(1000);
    }
    expect(t.results.length).toBeGreaterThanOrEqual(9);
    expect(t.ctx.runner.callsTo(IPTABLES).filter((c) => isCanaryListing(c.args))).toHaveLength(0);
    await t.loop.stop();
  });

  it('a firewalld reload (every table flushed) is one resync, logged once', async () => {
    const t = setUp();
    await t.backend.start(t.ctx);
    t.loop.start();
    t.loop.request();
    await t.ctx.clock.advanceAsync(0);
    for (const table of CANARY_TABLES) t.flush(table);
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toMatchObject({ full: true, ok: true });
    expect(t.resyncLines().map((e) => e.fields.tables)).toEqual([['mangle', 'nat', 'filter']]);
    expect(await t.drift()).toBe(1);
    for (const table of CANARY_TABLES) expect(t.kernel.get(table)!.has('KUBE-PROXY-CANARY'), table).toBe(true);
    expect(t.kernel.get('filter')!.get('FORWARD')).toContain('-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD');
    await t.loop.stop();
  });

  it('an iptables that cannot answer (xtables lock) is no drift: a warning, no resync, no count', async () => {
    const t = setUp();
    await t.backend.start(t.ctx);
    t.loop.start();
    t.loop.request();
    await t.ctx.clock.advanceAsync(0);
    t.ctx.runner.once(IPTABLES, { code: 4, stderr: 'Another app is currently holding the xtables lock.' }, isCanaryListing);
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: SYNC_PERIOD, full: false, ok: true });
    expect(t.ctx.logger.entries.filter((e) => e.msg === 'could not check the iptables canary chains')).toHaveLength(1);
    expect(t.resyncLines()).toHaveLength(0);
    expect(await t.drift()).toBe(0);
    await t.loop.stop();
  });
});

describe('checkCanaries', () => {
  it('names the tables whose canary is gone; any other failure is no conclusion', async () => {
    const { runner } = testContext();
    runner.on(IPTABLES, (args) => (args[2] === 'filter' ? { code: 1 } : { code: 0 }));
    expect(await checkCanaries(runner, IPTABLES, 1000)).toEqual({ state: 'deleted', tables: ['filter'] });
    runner.on(IPTABLES, { code: 0 });
    expect(await checkCanaries(runner, IPTABLES, 1000)).toEqual({ state: 'present' });
    runner.on(IPTABLES, () => {
      throw new Error('spawn iptables-nft ENOENT');
    });
    expect(await checkCanaries(runner, IPTABLES, 1000)).toMatchObject({ state: 'unknown', reason: expect.stringContaining('ENOENT') });
  });
});
