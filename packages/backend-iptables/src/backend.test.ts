import { describe, expect, it } from 'vitest';
import { endpointSlice, proxyConfig, service, testContext, type DeepPartial } from '@kube-proxy-ts/testing';
import type { CommandRunner, ProxyConfig } from '@kube-proxy-ts/core';
import { iptablesCommands, isServiceChainName } from '@kube-proxy-ts/netfilter';
import { IptablesBackend, type IptablesBackendOptions } from './backend.js';
import { FULL_SYNC_PERIOD_MS } from './layout.js';
import { tracePacket } from './packet-tracer.js';
import { chainsOf, Cluster, TEST_HOSTNAME, TEST_NODE_IP } from './cluster.test-support.js';
import { IptablesKernelModel } from './kernel-model.test-support.js';
import { commitPlan, planSync } from './sync-plan.js';

const RESTORE = 'iptables-nft-restore';
const SAVE = 'iptables-nft-save';

async function setUp(config: DeepPartial<ProxyConfig> = {}, extra: Partial<IptablesBackendOptions> = {}) {
  const ctx = testContext({ node: { name: TEST_HOSTNAME, addresses: [TEST_NODE_IP] } });
  const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8', ...config }), flavour: 'nft', ...extra });
  await backend.start(ctx);
  ctx.runner.reset();
  return { ctx, backend, runner: ctx.runner };
}

const svc = (n: number, extra: Parameters<typeof service>[2] = {}) =>
  service('ns1', `svc${n}`, { clusterIP: `172.30.0.${n}`, ports: [{ name: 'p80', port: 80 }], ...(extra as object) });
const slice = (n: number, ips: string[], protocol: 'TCP' | 'UDP' = 'TCP') =>
  endpointSlice('ns1', `svc${n}`, { name: `svc${n}-a`, endpoints: ips, ports: [{ name: 'p80', port: 80, protocol }] });

describe('IptablesBackend sync', () => {
  it('starts with a full sync: reads the kernel, inserts jumps, creates canaries, one restore --noflush --counters', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']));
    const { state, changes } = cluster.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result).toMatchObject({ ok: true, full: true });
    // nat is dumped for leftovers of ours; jumps are looked for in the built-in chains alone.
    expect(runner.callsTo(SAVE).map((c) => c.args)).toEqual([['-t', 'nat']]);
    const listed = runner.callsTo('iptables-nft').filter((c) => c.args.includes('-S')).map((c) => c.args.slice(1).join(' '));
    expect(listed).toEqual(['-t filter -S INPUT', '-t filter -S FORWARD', '-t filter -S OUTPUT', '-t nat -S OUTPUT', '-t nat -S PREROUTING', '-t nat -S POSTROUTING']);
    const restores = runner.callsTo(RESTORE);
    expect(restores).toHaveLength(1);
    expect(restores[0]!.args).toEqual(['-w', '5', '-W', '100000', '--noflush', '--counters']);
    const payload = restores[0]!.stdin!;
    expect(payload).toBe(backend.lastPayload());
    expect(payload).toContain('-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n');
    expect(payload).toContain('-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES\n');
    expect(payload).toContain('*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n');
    // The jumps make the payload traceable as the kernel would run it.
    expect(tracePacket(payload, { src: '10.0.0.2', dst: '172.30.0.1', dport: 80, protocol: 'tcp' }, { localAddresses: [TEST_NODE_IP] }).dnatTargets).toEqual(['10.180.0.1:80']);
  });

  it('does not keep a large sync’s payloads once it is done', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster();
    const ip = (i: number) => `172.30.${i >> 8}.${i & 255}`;
    for (let i = 1; i <= 2000; i++) {
      cluster.upsert(service('ns1', `svc${i}`, { clusterIP: ip(i), ports: [{ name: 'p80', port: 80 }] }), endpointSlice('ns1', `svc${i}`, { name: `svc${i}-a`, endpoints: [`10.180.${i >> 8}.${i & 255}`, `10.181.${i >> 8}.${i & 255}`], ports: [{ name: 'p80', port: 80, protocol: 'TCP' }] }));
    }
    const { state, changes } = cluster.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result.ok).toBe(true);
    const written = runner.stdinsTo(RESTORE).reduce((n, p) => n + p.length, 0);
    expect(written).toBeGreaterThan(1 << 20);
    expect(result.stats?.payloadBytes).toBe(written);
    expect(backend.lastPayload()).toBe('');
  });

  it.each([
    ['iptables v1.8.9 (nf_tables)', true],
    ['iptables v1.6.1', false],
  ])('masquerades with --random-fully only when the binary supports it (%s)', async (version, expected) => {
    const ctx = testContext({ node: { name: TEST_HOSTNAME, addresses: [TEST_NODE_IP] } });
    ctx.runner.on('iptables-nft', { stdout: `${version}\n` }, (args) => args[0] === '--version');
    const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8' }), flavour: 'nft' });
    await backend.start(ctx);
    const { state, changes } = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1'])).checkpoint();
    await backend.sync(state, changes);
    const masquerade = chainsOf(backend.lastPayload()).nat!['KUBE-POSTROUTING']!.find((r) => r.includes('-j MASQUERADE'));
    expect(masquerade?.endsWith('--random-fully')).toBe(expected);
  });

  it('follows the node\'s addresses for restricted NodePorts at every sync, not only full ones', async () => {
    const { backend, runner } = await setUp({ nodePortAddresses: ['192.168.0.0/16'] });
    const addresses = (ips: string[]) => ({ stdout: JSON.stringify([{ ifname: 'eth0', addr_info: ips.map((local) => ({ local })) }]) });
    runner.on('ip', addresses([TEST_NODE_IP]), (a) => a.includes('addr'));
    const cluster = new Cluster().upsert(svc(1, { type: 'NodePort', ports: [{ name: 'p80', port: 80, nodePort: 30001 }] }), slice(1, ['10.180.0.1']));
    let { state, changes } = cluster.checkpoint();
    await backend.sync(state, changes);
    const nodePortJumps = () => chainsOf(backend.lastPayload()).nat?.['KUBE-SERVICES']?.filter((r) => r.endsWith('-j KUBE-NODEPORTS'));
    expect(nodePortJumps()).toEqual([`-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d ${TEST_NODE_IP} -j KUBE-NODEPORTS`]);
    runner.on('ip', addresses([TEST_NODE_IP, '192.168.7.7']), (a) => a.includes('addr'));
    ({ state, changes } = cluster.upsert(slice(1, ['10.180.0.2'])).checkpoint());
    const result = await backend.sync(state, changes);
    expect(result.full).toBe(false);
    expect(nodePortJumps()).toEqual([TEST_NODE_IP, '192.168.7.7'].map((ip) => `-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d ${ip} -j KUBE-NODEPORTS`));
  });

  it('does not insert jumps the kernel already has', async () => {
    const { backend, runner } = await setUp();
    const prerouting = '-P PREROUTING ACCEPT\n-A PREROUTING -j CALI-PREROUTING\n-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n';
    runner.on('iptables-nft', { stdout: prerouting }, (a) => a.join(' ') === '-w -t nat -S PREROUTING');
    const { state, changes } = new Cluster().checkpoint();
    await backend.sync(state, changes);
    const payload = runner.stdinsTo(RESTORE)[0]!;
    expect(payload).not.toContain('-I PREROUTING');
    expect(payload).toContain('-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
  });

  it('checks the jumps of a built-in chain it cannot list one by one with -C', async () => {
    const { backend, runner } = await setUp();
    runner.on('iptables-nft', { code: 1, stderr: 'boom' }, (args) => args.includes('-S') && args.includes('nat'));
    runner.on('iptables-nft', (args) => ({ code: args.includes('PREROUTING') ? 0 : 1 }), (args) => args.includes('-C'));
    const { state, changes } = new Cluster().checkpoint();
    expect((await backend.sync(state, changes)).ok).toBe(true);
    expect(runner.callsTo('iptables-nft').filter((c) => c.args.includes('-C')).map((c) => c.args[4])).toEqual(['OUTPUT', 'PREROUTING', 'POSTROUTING']);
    const payload = runner.stdinsTo(RESTORE)[0]!;
    expect(payload).not.toContain('-I PREROUTING');
    expect(payload).toContain('-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING');
    expect(payload).toContain('-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES');
  });

  it('takes its chains from what it wrote on a later full sync: no dump of the table', async () => {
    const { backend, runner, ctx } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']), svc(2), slice(2, ['10.180.1.1']));
    let cp = cluster.checkpoint();
    await backend.sync(cp.state, cp.changes);
    runner.reset();
    cluster.deleteService('ns1', 'svc2').deleteSlice('ns1', 'svc2-a');
    cp = cluster.checkpoint();
    ctx.clock.advance(FULL_SYNC_PERIOD_MS + 1);
    const result = await backend.sync(cp.state, cp.changes);
    expect(result).toMatchObject({ ok: true, full: true });
    expect(runner.callsTo(SAVE)).toEqual([]);
    // svc2's chains are known to be ours and stale.
    expect(runner.stdinsTo(RESTORE)[0]!.match(/^-X KUBE-(SVC|SEP)-/gm)).toHaveLength(2);
  });

  it('writes only what changed on a partial sync, without reading the kernel', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1', '10.180.0.2']), svc(2), slice(2, ['10.180.1.1']));
    const first = cluster.checkpoint();
    await backend.sync(first.state, first.changes);
    runner.reset();

    // One endpoint of svc1 replaced.
    cluster.upsert(slice(1, ['10.180.0.1', '10.180.0.3']));
    const next = cluster.checkpoint();
    const result = await backend.sync(next.state, next.changes);
    expect(result).toMatchObject({ ok: true, full: false });
    expect(runner.callsTo(SAVE)).toEqual([]);
    const payloads = runner.stdinsTo(RESTORE);
    expect(payloads).toHaveLength(1);
    const tables = chainsOf(payloads[0]!);
    // Only svc1's chains; the top-level chains did not change and are not rewritten.
    const natChains = Object.keys(tables.nat!);
    expect(natChains).not.toContain('KUBE-SERVICES');
    expect(natChains.filter((c) => c.startsWith('KUBE-SVC-'))).toHaveLength(1);
    expect(payloads[0]).toMatch(/^-X KUBE-SEP-/m); // 10.180.0.2's chain deleted
    expect(payloads[0]).not.toContain('*filter');
    expect(payloads[0]).not.toContain('10.180.1.1');
    expect(result.stats).toMatchObject({ servicesWritten: 1, chainsDeleted: 1, topLevelRewritten: 0 });
  });

  it('patches KUBE-SERVICES with -D/-I when a service comes or goes, keeping the node-port rule last', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']));
    const first = cluster.checkpoint();
    await backend.sync(first.state, first.changes);
    const before = (await backend.inspect()) as { nat: Record<string, string[]> };

    cluster.upsert(svc(2), slice(2, ['10.180.1.1']));
    let cp = cluster.checkpoint();
    runner.reset();
    await backend.sync(cp.state, cp.changes);
    const added = runner.stdinsTo(RESTORE)[0]!;
    expect(added).toContain('-I KUBE-SERVICES 1 -m comment --comment "ns1/svc2:p80 cluster IP"');
    expect(added).not.toContain(':KUBE-SERVICES ');

    cluster.deleteSlice('ns1', 'svc2-a').deleteService('ns1', 'svc2');
    cp = cluster.checkpoint();
    runner.reset();
    await backend.sync(cp.state, cp.changes);
    const removed = runner.stdinsTo(RESTORE)[0]!;
    expect(removed).toContain('-D KUBE-SERVICES -m comment --comment "ns1/svc2:p80 cluster IP"');
    expect(removed).toMatch(/^-X KUBE-SVC-/m);
    expect(await backend.inspect()).toEqual(before);
  });

  it('remembers its service chains as the kernel holds them, and a partial sync writes what a recompute from scratch would', async () => {
    // What the backend keeps of each service port is not the text it wrote: both must still agree.
    const ctx = testContext({ node: { name: TEST_HOSTNAME, addresses: [TEST_NODE_IP] } });
    const kernel = new IptablesKernelModel();
    const commands = iptablesCommands('nft', 'IPv4');
    const toKernel = kernel.runner(commands, ctx.runner);
    const payloads: string[] = [];
    const runner: CommandRunner = {
      run: (command, args, options) => {
        if (command === commands.restore) payloads.push(String(options?.stdin));
        return toKernel.run(command, args, options);
      },
    };
    const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: '10.0.0.0/8' }), flavour: 'nft' });
    await backend.start({ ...ctx, runner });
    const kernelServiceChains = () => {
      const nat = kernel.snapshot().nat!;
      return Object.fromEntries(Object.keys(nat).filter(isServiceChainName).sort().map((chain) => [chain, nat[chain]]));
    };
    const cluster = new Cluster().upsert(
      svc(1, { type: 'NodePort' }),
      slice(1, ['10.180.0.1', '10.180.0.2']),
      service('ns1', 'svc2', (s) => {
        s.spec!.clusterIP = '172.30.0.2';
        s.spec!.ports = [{ name: 'p80', port: 80 }];
        s.spec!.sessionAffinity = 'ClientIP';
      }),
      slice(2, ['10.180.0.3', '10.180.0.4']),
      svc(3),
      slice(3, ['10.180.0.5']),
    );
    const first = cluster.checkpoint();
    expect(await backend.sync(first.state, first.changes)).toMatchObject({ ok: true, full: true });
    const inspected = async () => ((await backend.inspect()) as { serviceChains: Record<string, string[]> }).serviceChains;
    expect(Object.keys(kernelServiceChains()).length).toBeGreaterThan(8);
    expect(await inspected()).toEqual(kernelServiceChains());

    payloads.length = 0;
    const next = cluster.upsert(slice(2, ['10.180.0.3', '10.180.0.9'])).checkpoint();
    expect(await backend.sync(next.state, next.changes)).toMatchObject({ ok: true, full: false, stats: { servicesWritten: 1, chainsDeleted: 1 } });
    const previous = backend.computeRules(first.state);
    const model = commitPlan(undefined, planSync({ rules: previous, model: undefined, full: true, changed: new Set(), previous: undefined }));
    const recomputed = planSync({ rules: backend.computeRules(next.state), model, full: false, changed: next.changes.servicePorts, previous });
    expect(payloads).toEqual(recomputed.transactions.map((t) => t.payload));
    expect(payloads.join('')).not.toMatch(/10\.180\.0\.[125]:80/);
    expect(await inspected()).toEqual(kernelServiceChains());
  });

  it('splits a large sync into bounded transactions, top-level chains last', async () => {
    const { backend, runner } = await setUp({}, { limits: { maxServicesPerTransaction: 2, maxLinesPerTransaction: 1000 } });
    const cluster = new Cluster();
    for (let i = 1; i <= 5; i++) cluster.upsert(svc(i), slice(i, [`10.180.${i}.1`]));
    const { state, changes } = cluster.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result.ok).toBe(true);
    const payloads = runner.stdinsTo(RESTORE);
    expect(payloads).toHaveLength(4);
    for (const [i, p] of payloads.slice(0, 3).entries()) {
      expect(p.match(/^:KUBE-SVC-/gm)).toHaveLength(i < 2 ? 2 : 1);
      expect(p).not.toContain(':KUBE-SERVICES');
      expect(p).toContain(':KUBE-MARK-MASQ - [0:0]\n'); // service chains jump to it
    }
    // The top-level chains come alone: every service chain they jump to exists by then.
    expect(payloads[3]).toContain(':KUBE-SERVICES - [0:0]');
    expect(payloads[3]).not.toMatch(/^:KUBE-(SVC|SEP)-/m);
    // What it remembers equals one transaction's worth, and a partial sync builds on it.
    const single = await setUp();
    await single.backend.sync(state, changes);
    expect(single.runner.callsTo(RESTORE)).toHaveLength(1);
    expect(await backend.inspect()).toEqual(await single.backend.inspect());
    expect(result.stats).toMatchObject({ transactions: 4, servicesWritten: 5 });
  });

  it('stops a large full sync at the first failed transaction, running one restore at a time', async () => {
    const { backend, runner } = await setUp({}, { limits: { maxServicesPerTransaction: 2, maxLinesPerTransaction: 1000 } });
    const cluster = new Cluster();
    for (let i = 1; i <= 7; i++) cluster.upsert(svc(i), slice(i, [`10.180.${i}.1`]));
    const { state, changes } = cluster.checkpoint();
    let calls = 0;
    let running = 0;
    let overlapped = false;
    runner.on(RESTORE, async () => {
      calls++;
      overlapped ||= ++running > 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return calls === 2 ? { code: 1, stderr: 'iptables-nft-restore: line 7 failed' } : { code: 0 };
    });
    const result = await backend.sync(state, changes);
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(/transaction 2\b.*line 7/);
    expect(calls).toBe(2);
    expect(overlapped).toBe(false);
    calls = 10;
    const retry = await backend.sync(state, { ...changes, servicePorts: new Set() });
    expect(retry).toMatchObject({ ok: true, full: true });
    expect(runner.stdinsTo(RESTORE).at(-1)).toContain(':KUBE-SERVICES - [0:0]');
  });

  it('reports a restore that cannot even start during a large full sync as a failed sync', async () => {
    const { backend, runner } = await setUp({}, { limits: { maxServicesPerTransaction: 1, maxLinesPerTransaction: 1000 } });
    const cluster = new Cluster();
    for (let i = 1; i <= 3; i++) cluster.upsert(svc(i), slice(i, [`10.180.${i}.1`]));
    const { state, changes } = cluster.checkpoint();
    runner.on(RESTORE, () => {
      throw new Error('spawn iptables-nft-restore ENOENT');
    });
    const result = await backend.sync(state, changes);
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(/transaction 1\b.*ENOENT/);
  });

  it('writes each chain whole, jump targets before the chains that jump to them, each kind by descending name', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster();
    for (let i = 1; i <= 4; i++) cluster.upsert(svc(i, { type: 'NodePort', ports: [{ name: 'p80', port: 80, nodePort: 30000 + i }] }), slice(i, [`10.180.${i}.1`, `10.180.${i}.2`]));
    const { state, changes } = cluster.checkpoint();
    expect((await backend.sync(state, changes)).ok).toBe(true);
    const nat = /\*nat\n([^]*?)COMMIT/.exec(runner.stdinsTo(RESTORE)[0]!)![1]!.split('\n');
    const blocks = nat.filter((l) => /^:KUBE-(SEP|SVC|EXT)-/.test(l)).map((l) => l.slice(1, l.indexOf(' ')));
    const kinds = blocks.map((c) => c.slice(5, 8));
    expect(kinds).toEqual([...Array(8).fill('SEP'), ...Array(4).fill('SVC'), ...Array(4).fill('EXT')]);
    for (const kind of ['SEP', 'SVC', 'EXT']) {
      const names = blocks.filter((c) => c.slice(5, 8) === kind);
      expect(names).toEqual([...names].sort().reverse());
    }
    // A chain's rules follow its declaration.
    for (const chain of blocks) {
      const at = nat.indexOf(`:${chain} - [0:0]`);
      const rules = nat.flatMap((l, i) => (l.startsWith(`-A ${chain} `) ? [i] : []));
      expect(rules.length).toBeGreaterThan(0);
      expect(rules).toEqual(rules.map((_, k) => at + 1 + k));
    }
    // KUBE-SERVICES by descending target, the node-port rule last.
    const services = nat.filter((l) => l.startsWith('-A KUBE-SERVICES ')).map((l) => l.slice(l.lastIndexOf('-j ') + 3));
    expect(services.at(-1)).toBe('KUBE-NODEPORTS');
    expect(services.slice(0, -1)).toEqual([...services.slice(0, -1)].sort().reverse());
  });

  it('batches by 100 services on iptables-nft and by 1000 on legacy (which copies the whole table per commit)', async () => {
    const cluster = new Cluster();
    for (let i = 1; i <= 150; i++) cluster.upsert(svc(i), slice(i, [`10.180.${i}.1`]));
    const { state, changes } = cluster.checkpoint();
    const nft = await setUp();
    await nft.backend.sync(state, changes);
    expect(nft.runner.callsTo(RESTORE)).toHaveLength(3); // 100 and 50 services, then the top-level chains
    const legacy = await setUp({}, { flavour: 'legacy' });
    await legacy.backend.sync(state, changes);
    expect(legacy.runner.callsTo('iptables-legacy-restore')).toHaveLength(1);
  });

  it('writes larger transactions into a table already holding many chains of ours (each commit walks them all)', async () => {
    const cluster = new Cluster();
    for (let i = 1; i <= 600; i++) cluster.upsert(svc(i, { clusterIP: `172.30.${i >> 8}.${i & 255}` }), slice(i, [`10.180.${i >> 8}.${i & 255}`]));
    const { state, changes } = cluster.checkpoint();
    const serviceTransactions = (payloads: string[]) => payloads.filter((p) => /^:KUBE-SVC-/m.test(p)).map((p) => p.match(/^:KUBE-SVC-/gm)!.length);

    const fresh = await setUp();
    await fresh.backend.sync(state, changes);
    expect(serviceTransactions(fresh.runner.stdinsTo(RESTORE))).toEqual([100, 100, 100, 100, 100, 100]);

    // A restart: the kernel holds 20 000 service chains (leftovers here, deleted after the sync).
    const restarted = await setUp();
    const leftovers = Array.from({ length: 20_000 }, (_, i) => `:KUBE-SEP-${String(i).padStart(16, 'A')} - [0:0]`).join('\n');
    restarted.runner.on(SAVE, { stdout: `*nat\n${leftovers}\nCOMMIT\n` }, (a) => a[1] === 'nat');
    expect((await restarted.backend.sync(state, changes)).ok).toBe(true);
    expect(serviceTransactions(restarted.runner.stdinsTo(RESTORE))).toEqual([500, 100]);
  });

  it('counts a failed restore, keeps going with a full sync that reads the kernel again', async () => {
    const { backend, runner, ctx } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']));
    let cp = cluster.checkpoint();
    await backend.sync(cp.state, cp.changes);

    cluster.upsert(slice(1, ['10.180.0.2']));
    cp = cluster.checkpoint();
    runner.once(RESTORE, { code: 2, stderr: 'iptables-nft-restore: line 3 failed\n' });
    const failed = await backend.sync(cp.state, cp.changes);
    expect(failed.ok).toBe(false);
    expect(failed.full).toBe(false);
    expect(failed.error?.message).toMatch(/line 3/);
    const metrics = await ctx.metrics.getMetricsAsJSON();
    const value = (name: string) => metrics.find((m) => m.name === name)?.values[0]?.value;
    expect(value('kubeproxy_sync_proxy_rules_iptables_restore_failures_total')).toBe(1);
    expect(value('kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total')).toBe(1);

    runner.reset();
    const retry = await backend.sync(cp.state, { ...cp.changes, servicePorts: new Set() });
    expect(retry).toMatchObject({ ok: true, full: true });
    expect(runner.callsTo(SAVE).map((c) => c.args)).toEqual([['-t', 'nat']]);
    expect(runner.stdinsTo(RESTORE)[0]).toContain('10.180.0.2:80');
  });

  it('deletes stale chains of ours found in the kernel at start, and never foreign ones', async () => {
    const { backend, runner } = await setUp();
    runner.on(SAVE, { stdout: '*nat\n:KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]\n:KUBE-SEP-OLDOLDOLDOLDOLDO - [0:0]\n:CALI-SVC-X - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n' }, (a) => a[1] === 'nat');
    const { state, changes } = new Cluster().checkpoint();
    await backend.sync(state, changes);
    const payload = runner.stdinsTo(RESTORE)[0]!;
    expect(payload).toContain('-X KUBE-SEP-OLDOLDOLDOLDOLDO\n-X KUBE-SVC-OLDOLDOLDOLDOLDO\n');
    expect(payload).not.toContain('CALI');
    expect(payload).not.toContain('KUBE-KUBELET-CANARY');
  });

  it('forces a full sync when the canary chain is gone', async () => {
    const { backend, runner, ctx } = await setUp();
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']));
    let cp = cluster.checkpoint();
    await backend.sync(cp.state, cp.changes);
    ctx.clock.advance(31_000);
    runner.reset();
    runner.once('iptables-nft', { code: 1, stderr: 'iptables: No chain/target/match by that name.' });
    cp = cluster.checkpoint();
    const result = await backend.sync(cp.state, cp.changes);
    expect(runner.calls[0]).toMatchObject({ command: 'iptables-nft', args: ['-w', '-t', 'mangle', '-S', 'KUBE-PROXY-CANARY'] });
    expect(result.full).toBe(true);
    expect(runner.stdinsTo(RESTORE)[0]).toContain(':KUBE-PROXY-CANARY');
  });

  it('flushes conntrack entries of a removed UDP endpoint after the sync', async () => {
    const { backend, runner } = await setUp();
    const cluster = new Cluster().upsert(
      service('ns1', 'dns', { clusterIP: '172.30.0.10', ports: [{ name: 'p80', port: 80, protocol: 'UDP' }] }),
      endpointSlice('ns1', 'dns', { name: 'dns-a', endpoints: ['10.180.0.1', '10.180.0.2'], ports: [{ name: 'p80', port: 80, protocol: 'UDP' }] }),
    );
    let cp = cluster.checkpoint();
    await backend.sync(cp.state, cp.changes);
    runner.reset();
    cluster.upsert(endpointSlice('ns1', 'dns', { name: 'dns-a', endpoints: ['10.180.0.1'], ports: [{ name: 'p80', port: 80, protocol: 'UDP' }] }));
    cp = cluster.checkpoint();
    await backend.sync(cp.state, cp.changes);
    const conntrack = runner.callsTo('conntrack').map((c) => c.args);
    expect(conntrack).toContainEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', '172.30.0.10', '--orig-port-dst', '80', '--reply-src', '10.180.0.2', '--reply-port-src', '80']);
    // After the rules changed, never before.
    const order = runner.calls.map((c) => c.command);
    expect(order.indexOf(RESTORE)).toBeLessThan(order.indexOf('conntrack'));
  });

  it('sets route_localnet on the first sync only (not at start, which --cleanup also runs)', async () => {
    const ctx = testContext({ node: { name: TEST_HOSTNAME, addresses: [TEST_NODE_IP] } });
    const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig(), flavour: 'nft' });
    await backend.start(ctx);
    const sysctlWrites = () => ctx.runner.callsTo('sysctl').filter((c) => c.args[0] === '-w').map((c) => c.args);
    expect(sysctlWrites()).toEqual([]);
    const { state, changes } = new Cluster().checkpoint();
    await backend.sync(state, changes);
    expect(sysctlWrites()).toEqual([['-w', 'net.ipv4.conf.all.route_localnet=1']]);
    const v6 = new IptablesBackend({ ipFamily: 'IPv6', config: proxyConfig(), flavour: 'nft' });
    const ctx6 = testContext({ node: { name: TEST_HOSTNAME, addresses: ['2001:db8::1'] } });
    await v6.start(ctx6);
    const six = new Cluster('IPv6').checkpoint();
    await v6.sync(six.state, six.changes);
    expect(ctx6.runner.callsTo('sysctl').filter((c) => c.args[0] === '-w')).toEqual([]);
    expect(ctx6.runner.callsTo('ip6tables-nft-restore')).toHaveLength(1);
    // As upstream: kubelet's KUBE-FIREWALL and its jumps exist in IPv6 too, the chain empty.
    const payload6 = ctx6.runner.stdinsTo('ip6tables-nft-restore')[0]!;
    expect(payload6).toContain(':KUBE-FIREWALL - [0:0]\n');
    expect(payload6).not.toContain('-A KUBE-FIREWALL');
    expect(payload6).toMatch(/^-I INPUT 1 -j KUBE-FIREWALL$/m);
    expect(payload6).toMatch(/^-I OUTPUT 1 -j KUBE-FIREWALL$/m);
  });

  it('rewrites every service when a rule option all of them depend on changes (large-cluster mode)', async () => {
    const { backend } = await setUp();
    const many = Array.from({ length: 1001 }, (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']), svc(2), slice(2, many.slice(0, 999)));
    let cp = cluster.checkpoint();
    expect((await backend.sync(cp.state, cp.changes)).stats?.largeClusterMode).toBe(0);
    cluster.upsert(slice(2, many));
    cp = cluster.checkpoint();
    const result = await backend.sync(cp.state, cp.changes);
    expect(result).toMatchObject({ ok: true, full: true, stats: { largeClusterMode: 1 } });
    // svc1 did not change, yet its chains lose their comments too.
    expect(backend.lastPayload()).toContain('-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1 -j KUBE-MARK-MASQ\n');
  });

  it('reports failure instead of throwing when used before start()', async () => {
    const backend = new IptablesBackend({ ipFamily: 'IPv4', config: proxyConfig(), flavour: 'nft' });
    const { state, changes } = new Cluster().checkpoint();
    await expect(backend.sync(state, changes)).resolves.toMatchObject({ ok: false });
  });

  it('offers the payload of a full sync without touching the kernel (dry run)', async () => {
    const { backend, runner } = await setUp();
    const { state } = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1'])).checkpoint();
    const payload = backend.dryRun(state);
    expect(runner.calls).toEqual([]);
    expect(payload).toContain('-A KUBE-SEP-');
    expect(payload).toContain('*mangle');
  });
});

describe('IptablesBackend cleanup', () => {
  it('removes our jumps and KUBE-* chains, leaving foreign chains and kubelet-owned KUBE-FIREWALL', async () => {
    const { backend, runner, ctx } = await setUp();
    runner.on(SAVE, { stdout: '*mangle\n:KUBE-PROXY-CANARY - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n' }, (a) => a[1] === 'mangle');
    runner.on(SAVE, { stdout: '*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n:CALI-X - [0:0]\n:KUBE-POSTROUTING - [0:0]\nCOMMIT\n' }, (a) => a[1] === 'nat');
    runner.on(SAVE, { stdout: '*filter\n:KUBE-FORWARD - [0:0]\n:KUBE-FIREWALL - [0:0]\n:DOCKER - [0:0]\nCOMMIT\n' }, (a) => a[1] === 'filter');
    // The first delete of each jump succeeds, the second finds nothing.
    const seen = new Set<string>();
    runner.on('iptables-nft', (args) => {
      const key = args.join(' ');
      if (seen.has(key)) return { code: 1 };
      seen.add(key);
      return { code: 0 };
    });
    await backend.cleanup(ctx);
    const deletes = runner.callsTo('iptables-nft').map((c) => c.args.join(' '));
    expect(deletes).toContain('-w -t nat -D PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES');
    expect(deletes.some((d) => d.includes('KUBE-FIREWALL'))).toBe(false);
    const payloads = runner.stdinsTo(RESTORE).join('');
    // Top-level chains flushed first, then service chains removed, then the top-level chains.
    expect(runner.stdinsTo(RESTORE).slice(0, 3)).toEqual([
      '*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\nCOMMIT\n',
      '*nat\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n-X KUBE-SVC-AAAAAAAAAAAAAAAA\nCOMMIT\n',
      '*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n-X KUBE-SERVICES\n-X KUBE-POSTROUTING\nCOMMIT\n',
    ]);
    expect(payloads).toContain('-X KUBE-FORWARD');
    expect(payloads).toContain('*mangle\n:KUBE-PROXY-CANARY - [0:0]\n-X KUBE-PROXY-CANARY\nCOMMIT\n');
    expect(payloads).not.toMatch(/CALI|DOCKER|KUBE-FIREWALL|KUBE-KUBELET-CANARY/);
  });
});
