// The built daemon in nftables mode repairs its table removed or emptied behind its back: the
// table deleted, the whole ruleset flushed, and the table flushed. Each time traffic to the
// ClusterIP works again within one syncPeriod, one log line says why, and the drift counter on
// /metrics goes up by one.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYNC_MS, driftUnsupportedReason, occurrences, startDriftDaemon, type DriftDaemon } from './drift-daemon.js';

const unsupported = driftUnsupportedReason(['nft']);
if (unsupported) console.log(`nftables drift e2e skipped: ${unsupported}`);

const LINE = 'nftables kube-proxy table deleted or flushed; resyncing';
/** Time the repaired rules may take beyond syncPeriod: the sync itself and the probe, on a busy 2-core machine. */
const SLACK_MS = 2500;

describe.skipIf(unsupported !== undefined)('nftables mode: drift repairs itself (built daemon)', () => {
  let d: DriftDaemon;

  beforeAll(async () => {
    d = await startDriftDaemon('drfnft', 'nftables');
  });

  afterAll(async () => {
    await d?.stop();
  });

  it.each([
    ['nft delete table ip kube-proxy', ['nft', 'delete', 'table', 'ip', 'kube-proxy'], 1],
    ['nft flush ruleset', ['nft', 'flush', 'ruleset'], 2],
    ['nft flush table ip kube-proxy', ['nft', 'flush', 'table', 'ip', 'kube-proxy'], 3],
  ])('%s', async (what, argv, count) => {
    expect(await d.serving()).toBe(true);
    expect(await d.driftCount()).toBe(count - 1);
    const lines = occurrences(d.log(), LINE);
    await d.sb.execOk('node', argv);
    const started = Date.now();
    await d.waitFor('the drift counter', async () => (await d.driftCount()) === count, SYNC_MS + SLACK_MS);
    await d.waitFor('traffic to the ClusterIP', () => d.serving(), SYNC_MS + SLACK_MS - (Date.now() - started));
    console.log(`nftables drift e2e: repaired "${what}" after ${Date.now() - started} ms (syncPeriod ${SYNC_MS} ms)`);
    expect(occurrences(d.log(), LINE)).toBe(lines + 1);
    const table = await d.sb.execOk('node', ['nft', 'list', 'chain', 'ip', 'kube-proxy', 'nat-prerouting']);
    expect(table).toContain('jump services');
    // Repaired once: the next periodic syncs find the table in place.
    await new Promise((r) => setTimeout(r, SYNC_MS + 500));
    expect(await d.driftCount()).toBe(count);
    expect(await d.serving()).toBe(true);
  });
});
