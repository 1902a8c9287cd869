// Upstream kube-proxy as a differential oracle. Its release (the one e2e/kubernetes pins, built by
// scripts/build-kubernetes.sh) and our daemon run side by side, each in a node namespace of its
// own with identical addressing, with the same configuration file, node name and credentials,
// fed by one real kube-apiserver. What each leaves in the kernel is normalised (e2e/oracle/
// normalise.ts) and compared; a difference fails the suite unless e2e/oracle/
// accepted-differences.yaml lists it with its reason.
//
// iptables: nat, filter and mangle, IPv4 and IPv6, rule by rule. nftables: the table, every chain
// (base chains with their hooks and priorities) and its rules in order, and the named sets and
// maps with their elements, IPv4 and IPv6.
//
// Skipped when the binaries are not built, unless CI is set: then missing binaries fail.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeFeatures, features, writeFeatures } from './oracle/features.js';
import {
  type Difference,
  type Family,
  describe as describeDifference,
  diffIptables,
  diffNftables,
  isAccepted,
  loadAccepted,
  normaliseIptablesSave,
  normaliseNftJson,
} from './oracle/normalise.js';
import { DaemonPair, metricValue, pairUnsupportedReason, SIDES, type ProxyMode, type Side } from './oracle/pair.js';
import { kubernetesVersion, waitUntil } from './real-cluster.js';

const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

function unsupportedReason(): { reason: string; required: boolean } | undefined {
  const reason = pairUnsupportedReason();
  if (!reason) return undefined;
  // In CI the programs are built before the tests run: their absence is a failure, not a skip.
  const ci = process.env.CI === 'true' || process.env.CI === '1';
  return { reason, required: ci && !/root|Linux|missing tools/.test(reason) };
}

const unsupported = unsupportedReason();
if (unsupported && !unsupported.required) console.log(`upstream oracle e2e skipped: ${unsupported.reason}`);

describe.runIf(unsupported?.required)('upstream kube-proxy as an oracle: prerequisites (CI)', () => {
  it('has the Kubernetes binaries and the built daemon', () => {
    throw new Error(`CI is set, so this suite must run: ${unsupported?.reason}`);
  });
});

describe.skipIf(unsupported !== undefined)(`our rules against upstream kube-proxy ${unsupported ? '' : kubernetesVersion()}'s`, () => {
  let pair: DaemonPair;
  const accepted = loadAccepted();
  const used = new Set<number>();
  const ran = { nftables: false };

  const dump = async (side: Side, mode: ProxyMode, family: Family): Promise<string> => {
    const sb = pair.node(side);
    // Built-in chains' counters move with every probe of the daemons, and the dump's comments
    // hold the time: neither is part of the rules.
    if (mode === 'iptables') {
      const save = await sb.execOk('node', [family === 'ipv4' ? 'iptables-save' : 'ip6tables-save'], { timeoutMs: 30_000 });
      return save.replace(/ \[\d+:\d+\]$/gm, '').replace(/^#.*\n/gm, '');
    }
    const r = await sb.exec('node', ['nft', '-j', 'list', 'table', family === 'ipv4' ? 'ip' : 'ip6', 'kube-proxy'], { timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout : '{"nftables":[]}';
  };
  const dumps = async (mode: ProxyMode) => {
    const out = new Map<string, string>();
    for (const side of SIDES) for (const family of FAMILIES) out.set(`${side}/${family}`, await dump(side, mode, family));
    return out;
  };

  /**
   * Waits until both daemons synced after `since` (their last-sync gauge) and their rules stay
   * the same over two reads; returns those rules.
   */
  const settle = async (mode: ProxyMode, since: number): Promise<Map<string, string>> => {
    let last = new Map<string, string>();
    let stable = 0;
    await waitUntil(
      `both daemons to sync (${mode})`,
      async () => {
        pair.assertRunning();
        for (const side of SIDES) {
          if (!(metricValue(await pair.metrics(side), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'max') * 1000 > since)) return false;
        }
        const now = await dumps(mode);
        const same = [...now].every(([k, v]) => last.get(k) === v);
        last = now;
        stable = same ? stable + 1 : 0;
        if (stable < 2) await new Promise((r) => setTimeout(r, 1000));
        return stable >= 2;
      },
      90_000,
      () => SIDES.map((s) => pair.log(s)).join('\n'),
    );
    return last;
  };

  const unaccepted = (diffs: Difference[]): string[] =>
    diffs
      .filter((d) => {
        const a = isAccepted(d, accepted);
        if (a) used.add(accepted.indexOf(a));
        return !a;
      })
      .map(describeDifference);

  const compareIptables = (rules: Map<string, string>) => {
    const all: Difference[] = [];
    for (const family of FAMILIES) {
      const upstream = normaliseIptablesSave(rules.get(`upstream/${family}`) ?? '');
      const ours = normaliseIptablesSave(rules.get(`ours/${family}`) ?? '');
      all.push(...diffIptables(family, upstream, ours));
    }
    return all;
  };

  beforeAll(async () => {
    pair = await DaemonPair.start({ tag: 'orc', ipv6: true });
    await writeFeatures(pair.core, pair.discovery, true);
  }, 240_000);

  afterAll(async () => {
    const line = (a: (typeof accepted)[number]) => `  ${a.mode} ${a.family ?? ''} ${a.chain ?? ''} ${a.item ?? ''}: ${a.reason}`;
    const ranModes = new Set(['iptables', ...(ran.nftables ? ['nftables'] : [])]);
    const unused = accepted.filter((a, i) => !used.has(i) && ranModes.has(a.mode));
    if (unused.length > 0) console.log(`accepted differences that matched nothing (remove them):\n${unused.map(line).join('\n')}`);
    const pending = accepted.filter((a, i) => used.has(i) && a.fixPending);
    if (pending.length > 0) console.warn(`differences from upstream still to fix:\n${pending.map(line).join('\n')}`);
    await pair?.stop();
  }, 120_000);

  it('iptables: after the first sync, every rule of the feature list (IPv4 and IPv6) is upstream\'s', async () => {
    const since = Date.now();
    for (const side of SIDES) await pair.startDaemon(side, { mode: 'iptables' });
    const rules = await settle('iptables', since);

    // The oracle itself must have programmed the features, or the comparison proves nothing.
    const upstream4 = normaliseIptablesSave(rules.get('upstream/ipv4') ?? '');
    const upstream6 = normaliseIptablesSave(rules.get('upstream/ipv6') ?? '');
    const chains = (t: typeof upstream4, table: string, prefix: string) => [...(t.get(table)?.keys() ?? [])].filter((c) => c.startsWith(prefix));
    const v4 = features(true).filter((f) => f.service.spec?.ipFamilies?.includes('IPv4')).length;
    expect(chains(upstream4, 'nat', 'KUBE-SVC-').length + chains(upstream4, 'nat', 'KUBE-SVL-').length).toBeGreaterThanOrEqual(v4 - 1);
    expect(chains(upstream4, 'nat', 'KUBE-FW-')).toHaveLength(1);
    expect(chains(upstream6, 'nat', 'KUBE-SEP-').length).toBeGreaterThanOrEqual(5);

    expect(unaccepted(compareIptables(rules))).toEqual([]);
  }, 180_000);

  it('iptables: after an endpoint change (a partial sync for both), still upstream\'s', async () => {
    const since = Date.now();
    await changeFeatures(pair.discovery);
    const rules = await settle('iptables', since);
    const upstream = normaliseIptablesSave(rules.get('upstream/ipv4') ?? '');
    // The change reached the oracle: lb-open lost its only endpoint, so it is rejected now.
    expect([...(upstream.get('filter')?.get('KUBE-EXTERNAL-SERVICES')?.rules ?? [])].some((r) => r.includes('oracle/lb-open:http has no endpoints'))).toBe(true);
    expect(unaccepted(compareIptables(rules))).toEqual([]);
  }, 180_000);

  it("nftables: every chain with its rules, every set and map with its elements is upstream's (but the listed DNAT form)", async () => {
    for (const side of SIDES) {
      await pair.stopDaemon(side);
      await pair.cleanup(side);
    }
    const since = Date.now();
    for (const side of SIDES) await pair.startDaemon(side, { mode: 'nftables' });
    const rules = await settle('nftables', since);
    ran.nftables = true;
    const all: Difference[] = [];
    for (const family of FAMILIES) {
      const upstream = normaliseNftJson(rules.get(`upstream/${family}`) ?? '');
      const ours = normaliseNftJson(rules.get(`ours/${family}`) ?? '');
      expect(upstream.baseChains.size, `upstream's ${family} table`).toBeGreaterThanOrEqual(8);
      expect(upstream.elements.get('service-ips')?.length ?? 0).toBeGreaterThan(0);
      all.push(...diffNftables(family, upstream, ours));
    }
    expect(unaccepted(all)).toEqual([]);
  }, 240_000);
});
