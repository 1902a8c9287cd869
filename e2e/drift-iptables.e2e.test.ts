// The built daemon in iptables mode repairs rules removed behind its back: its nat table flushed
// and its chains deleted, then every table flushed as a firewalld reload does. Each time traffic
// to the ClusterIP works again within one syncPeriod, one log line says why, and the drift
// counter on /metrics goes up by one.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYNC_MS, driftUnsupportedReason, occurrences, startDriftDaemon, type DriftDaemon } from './drift-daemon.js';

const TOOLS = ['iptables-nft', 'iptables-legacy', 'iptables-nft-save', 'iptables-legacy-save'];
const unsupported = driftUnsupportedReason(TOOLS);
if (unsupported) console.log(`iptables drift e2e skipped: ${unsupported}`);

const LINE = 'iptables canary chain deleted; resyncing';
/** Time the repaired rules may take beyond syncPeriod: the sync itself and the probe, on a busy 2-core machine. */
const SLACK_MS = 2500;

describe.skipIf(unsupported !== undefined)('iptables mode: drift repairs itself (built daemon)', () => {
  let d: DriftDaemon;
  let iptables: string;

  beforeAll(async () => {
    d = await startDriftDaemon('drfipt', 'iptables');
    // The flavour the daemon chose is the one whose mangle table holds its canary.
    for (const flavour of ['nft', 'legacy']) {
      const mangle = await d.sb.execOk('node', [`iptables-${flavour}-save`, '-t', 'mangle']);
      if (mangle.includes(':KUBE-PROXY-CANARY')) iptables = `iptables-${flavour}`;
    }
    expect(iptables, 'a canary chain in one of the flavours').toBeDefined();
  });

  afterAll(async () => {
    await d?.stop();
  });

  /** Runs `drift` in the node namespace, then waits for traffic, the log line and the counter. */
  async function expectRepaired(drift: string[][], count: number) {
    expect(await d.serving()).toBe(true);
    expect(await d.driftCount()).toBe(count - 1);
    const lines = occurrences(d.log(), LINE);
    for (const argv of drift) await d.sb.execOk('node', argv);
    const started = Date.now();
    await d.waitFor('the drift counter', async () => (await d.driftCount()) === count, SYNC_MS + SLACK_MS);
    await d.waitFor('traffic to the ClusterIP', () => d.serving(), SYNC_MS + SLACK_MS - (Date.now() - started));
    console.log(`iptables drift e2e: repaired ${drift.map((a) => a.join(' ')).join('; ')} after ${Date.now() - started} ms (syncPeriod ${SYNC_MS} ms)`);
    expect(occurrences(d.log(), LINE)).toBe(lines + 1);
    // Everything is back: the jumps from the built-in chains and the canaries of all three tables.
    const save = await d.sb.execOk('node', [`${iptables}-save`]);
    expect(save).toMatch(/-A PREROUTING .*-j KUBE-SERVICES/);
    expect(save).toMatch(/-A POSTROUTING .*-j KUBE-POSTROUTING/);
    expect(save).toMatch(/-A FORWARD .*-j KUBE-FORWARD/);
    expect(save.match(/^:KUBE-PROXY-CANARY /gm)).toHaveLength(3);
    // Repaired once: the next periodic syncs find every canary in place.
    await new Promise((r) => setTimeout(r, SYNC_MS + 500));
    expect(await d.driftCount()).toBe(count);
    expect(await d.serving()).toBe(true);
  }

  it('iptables -t nat -F; iptables -t nat -X', async () => {
    await expectRepaired(
      [
        [iptables, '-w', '5', '-t', 'nat', '-F'],
        [iptables, '-w', '5', '-t', 'nat', '-X'],
      ],
      1,
    );
  });

  it('a firewalld reload: every table flushed and its chains deleted', async () => {
    const drift: string[][] = [];
    for (const table of ['filter', 'nat', 'mangle']) drift.push([iptables, '-w', '5', '-t', table, '-F'], [iptables, '-w', '5', '-t', table, '-X']);
    await expectRepaired(drift, 2);
  });
});
