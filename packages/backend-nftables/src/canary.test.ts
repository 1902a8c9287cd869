import { describe, expect, it } from 'vitest';
import { SyncRunner } from '@kube-proxy-ts/core';
import { ClusterFeed, endpointSlice, node, proxyConfig, service, testContext } from '@kube-proxy-ts/testing';
import { checkTable } from './canary.js';
import { NftScriptModel } from './nft-script-model.js';
import { NftablesBackend } from './backend.js';

const NODE = 'node1';
const NODE_IP = '192.168.0.2';
const SYNC_PERIOD = 30_000;
const DRIFT = 'kubeproxy_sync_proxy_rules_drift_detected_total';
const RESYNC_LINE = 'nftables kube-proxy table deleted or flushed; resyncing';

const isTableCheck = (args: readonly string[]) => args.join(' ') === 'list chain ip kube-proxy nat-prerouting';

/** A node whose nft answers from a model of the kernel's tables, driven as the daemon drives it. */
function setUp() {
  const ctx = testContext({ node: { name: NODE, addresses: [NODE_IP] } });
  const { runner, clock } = ctx;
  const kernel = new NftScriptModel();
  const ours = () => kernel.table('ip', 'kube-proxy');
  runner.on('nft', (args, stdin) => {
    if (args[0] === '-f') {
      try {
        kernel.apply(stdin ?? '');
        return { code: 0 };
      } catch (e) {
        return { code: 1, stderr: `Error: ${(e as Error).message}` };
      }
    }
    if (isTableCheck(args)) {
      const rules = ours()?.chains.get('nat-prerouting');
      if (!rules) return { code: 1, stderr: 'Error: No such file or directory\nlist chain ip kube-proxy nat-prerouting\n' };
      return { code: 0, stdout: `table ip kube-proxy {\n\tchain nat-prerouting {\n${rules.map((r) => `\t\t${r}\n`).join('')}\t}\n}\n` };
    }
    if (args.join(' ') === '-t -j list chains ip') return { code: 0, stdout: JSON.stringify({ nftables: [...(ours()?.chains.keys() ?? [])].map((name) => ({ chain: { table: 'kube-proxy', name } })) }) };
    if (args.join(' ') === '-t -j list sets ip') return { code: 0, stdout: JSON.stringify({ nftables: [] }) };
    return { code: 0 };
  });
  runner.on('ip', () => ({ stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: NODE_IP }] }]) }));
  const backend = new NftablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8', nftables: { syncPeriod: SYNC_PERIOD } }) });
  const feed = new ClusterFeed({ ipFamily: 'IPv4', node: node(NODE, { addresses: [NODE_IP] }) });
  feed.upsert(
    service('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
    endpointSlice('ns1', 'svc1', { name: 'svc1-a', endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80 }] }),
  );
  const results: Array<{ at: number; full: boolean; ok: boolean }> = [];
  const loop = new SyncRunner({
    minInterval: 1000,
    maxInterval: SYNC_PERIOD,
    clock,
    run: async () => {
      const at = clock.now();
      const { state, changes } = feed.checkpoint();
      const r = await backend.sync(state, changes);
      results.push({ at, full: r.full, ok: r.ok });
      return r.ok;
    },
  });
  const begin = async () => {
    await backend.start(ctx);
    loop.start();
    loop.request();
    await clock.advanceAsync(0);
    expect(results).toEqual([{ at: 0, full: true, ok: true }]);
  };
  /** The rules that dispatch traffic to svc1 are in place. */
  const serving = () => {
    const t = ours();
    if (!t) return false;
    const dispatch = t.containers.get('service-ips')?.elements;
    const target = [...(dispatch ?? [])].find(([k]) => k.startsWith('172.30.0.41 . tcp . 80'))?.[1].value?.split(' ')[1];
    return (t.chains.get('nat-prerouting') ?? []).includes('jump services') && target !== undefined && (t.chains.get(target)?.length ?? 0) > 0;
  };
  const drift = async () => (await ctx.metrics.getSingleMetric(DRIFT)?.get())?.values.find((v) => v.labels.ip_family === 'IPv4')?.value;
  const resyncLines = () => ctx.logger.entries.filter((e) => e.msg === RESYNC_LINE);
  return { ctx, kernel, backend, loop, results, begin, serving, drift, resyncLines };
}

describe('nftables table watch', () => {
  it.each([
    ['nft delete table ip kube-proxy', (k: NftScriptModel) => k.tables.delete('ip kube-proxy')],
    ['nft flush ruleset', (k: NftScriptModel) => k.tables.clear()],
    // firewalld's reload: every chain emptied, chains, maps and elements left.
    ['nft flush table ip kube-proxy', (k: NftScriptModel) => k.table('ip', 'kube-proxy')!.chains.forEach((rules) => (rules.length = 0))],
  ])('%s: found at the next periodic sync, logged once, counted, and the table rewritten', async (_what, drift) => {
    const t = setUp();
    await t.begin();
    expect(t.serving()).toBe(true);
    expect(await t.drift()).toBe(0);

    drift(t.kernel);
    expect(t.serving()).toBe(false);
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: SYNC_PERIOD, full: true, ok: true });
    expect(t.serving()).toBe(true);
    expect(t.resyncLines()).toHaveLength(1);
    expect(await t.drift()).toBe(1);

    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: 2 * SYNC_PERIOD, full: false, ok: true });
    expect(t.resyncLines()).toHaveLength(1);
    expect(await t.drift()).toBe(1);
    await t.loop.stop();
  });

  it('lists one base chain at every periodic sync, and at most once per half period in a burst of changes', async () => {
    const t = setUp();
    await t.begin();
    const checks = () => t.ctx.runner.calls.filter((c) => c.command === 'nft' && isTableCheck(c.args)).length;
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(checks()).toBe(2);
    for (let i = 0; i < 5; i++) {
      t.loop.request();
      await t.ctx.clock.advanceAsync(1000);
    }
    expect(t.results.length).toBeGreaterThanOrEqual(8);
    expect(checks()).toBe(2);
    await t.loop.stop();
  });

  it('an nft that cannot answer is no drift: a warning, no resync, no count', async () => {
    const t = setUp();
    await t.begin();
    t.ctx.runner.once('nft', { code: 1, stderr: 'Error: Could not process rule: Operation not permitted' }, isTableCheck);
    await t.ctx.clock.advanceAsync(SYNC_PERIOD);
    expect(t.results.at(-1)).toEqual({ at: SYNC_PERIOD, full: false, ok: true });
    expect(t.ctx.logger.entries.filter((e) => e.msg === 'could not check the nftables kube-proxy table')).toHaveLength(1);
    expect(t.resyncLines()).toHaveLength(0);
    expect(await t.drift()).toBe(0);
    await t.loop.stop();
  });
});

describe('checkTable', () => {
  it('reads the jump to services in nat-prerouting of the family’s table', async () => {
    const ctx = testContext();
    ctx.runner.on('nft', { code: 0, stdout: 'table ip6 kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n}\n' });
    expect(await checkTable(ctx, 'IPv6', 1000)).toEqual({ state: 'intact' });
    expect(ctx.runner.calls[0]!.args).toEqual(['list', 'chain', 'ip6', 'kube-proxy', 'nat-prerouting']);
    ctx.runner.on('nft', { code: 0, stdout: 'table ip6 kube-proxy {\n\tchain nat-prerouting {\n\t}\n}\n' });
    expect(await checkTable(ctx, 'IPv6', 1000)).toMatchObject({ state: 'deleted' });
    ctx.runner.on('nft', () => {
      throw new Error('spawn nft ENOENT');
    });
    expect(await checkTable(ctx, 'IPv6', 1000)).toMatchObject({ state: 'unknown', reason: expect.stringContaining('ENOENT') });
  });
});
