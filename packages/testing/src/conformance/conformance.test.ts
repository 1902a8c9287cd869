import { describe, expect, it } from 'vitest';
import type { Backend, BackendFactory } from '@kube-proxy-ts/core';
import { testContext } from '../test-context.js';
import { nodeInfo } from '../builders/node.js';
import { describeBackendConformance } from './suite.js';
import { checkPartialSync, formatPartialSyncReport, partialSyncOk } from './partial-sync.js';
import { syncOrReport } from './harness.js';
import { createFakePlane, referenceBackendFactory } from './testdata/reference-backend.js';

const node = nodeInfo({ name: 'node1', zone: 'zone-a', addresses: ['192.168.50.1'], podCIDRs: ['10.244.1.0/24'] });

// Each backend instance on its own plane.
describeBackendConformance('reference', referenceBackendFactory(), {
  context: () => testContext({ runner: createFakePlane().runner(), node }),
});

// All instances on one plane (as with a real kernel namespace), with someone else's state in it.
const shared = createFakePlane();
describeBackendConformance(referenceBackendFactory(), {
  context: () => testContext({ runner: shared.runner(), node }),
  sharedDataPlane: true,
  foreignState: {
    install: () => void shared.entries.set('other/rule', 'keep me'),
    verify: () => expect(shared.entries.get('other/rule')).toBe('keep me'),
  },
  seeds: [4],
});

describeBackendConformance('reference', referenceBackendFactory(), {
  ipFamily: 'IPv6',
  context: () =>
    testContext({ runner: createFakePlane().runner(), node: nodeInfo({ ipFamily: 'IPv6', zone: 'zone-b', addresses: ['fd00::1'] }) }),
  seeds: [5],
});

// Without inspect(): the comparisons are skipped, the rest still runs.
const withoutInspect: BackendFactory = (opts) => {
  const { inspect: _dropped, ...rest } = referenceBackendFactory()(opts);
  return rest;
};
describeBackendConformance('reference without inspect', withoutInspect, {
  context: () => testContext({ runner: createFakePlane().runner(), node }),
});

const context = () => testContext({ runner: createFakePlane().runner(), node });

describe('checkPartialSync', () => {
  it('passes the correct reference backend over many seeds', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const report = await checkPartialSync(referenceBackendFactory(), { seed, steps: 15, context });
      expect(partialSyncOk(report), formatPartialSyncReport(report)).toBe(true);
      expect(report.history.length).toBeGreaterThan(10);
    }
  });

  it('catches a backend whose partial syncs keep deleted services', async () => {
    const reports = [];
    for (let seed = 1; seed <= 10; seed++) {
      reports.push(await checkPartialSync(referenceBackendFactory({ keepDeletedServices: true }), { seed, steps: 15, context }));
    }
    const caught = reports.filter((r) => !partialSyncOk(r));
    expect(caught.length).toBeGreaterThan(0);
    for (const r of caught) {
      expect(r.syncFailures).toEqual([]);
      // The leftovers exist only in the incrementally synced data plane, and the full one lacks them.
      for (const d of r.differences) {
        const m = /^after sync \d+: \$\.(ref\/IPv4\/svc\/conformance\/\S+): only in partial: /.exec(d);
        expect(m, d).not.toBeNull();
        expect((r.full as Record<string, unknown>)[m![1]!]).toBeUndefined();
      }
    }
    expect(formatPartialSyncReport(caught[0]!)).toMatch(/differs from a full sync[\s\S]*events:/);
  });

  it('catches it on a shared data plane too, comparing at the end only', async () => {
    const plane = createFakePlane();
    const sharedContext = () => testContext({ runner: plane.runner(), node });
    let caught = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const r = await checkPartialSync(referenceBackendFactory({ keepDeletedServices: true }), {
        seed, steps: 15, context: sharedContext, sharedDataPlane: true,
      });
      if (!partialSyncOk(r)) {
        caught++;
        expect(r.differences[0]).toMatch(/^after sync 15: .* only in partial/);
      }
      // Every backend was cleaned up: the plane is empty again.
      expect(plane.entries.size).toBe(0);
    }
    expect(caught).toBeGreaterThan(0);
  });

  it('catches a backend that ignores node changes', async () => {
    let caught = 0;
    for (let seed = 1; seed <= 40 && caught === 0; seed++) {
      const r = await checkPartialSync(referenceBackendFactory({ ignoreNodeChanges: true }), { seed, steps: 20, context });
      if (!partialSyncOk(r)) {
        caught++;
        expect(r.history.some((h) => /node zone=/.test(h))).toBe(true);
        expect(r.differences.length).toBeGreaterThan(0);
        for (const d of r.differences) expect(d).toMatch(/\.endpoints/);
      }
    }
    expect(caught).toBe(1);
  });

  it('reports a failing sync with its step', async () => {
    const failing: BackendFactory = (opts) => {
      const inner = referenceBackendFactory()(opts);
      let n = 0;
      return { ...inner, sync: async (s, c) => (++n === 3 ? { ok: false, full: false, error: new Error('restore failed') } : inner.sync(s, c)) };
    };
    const r = await checkPartialSync(failing, { seed: 1, steps: 5, context });
    expect(r.syncFailures).toEqual(['sync 3: sync reported failure: restore failed']);
    expect(partialSyncOk(r)).toBe(false);
  });

  it('reports a backend failing every sync in one line', async () => {
    const broken: BackendFactory = (opts) => ({
      ...referenceBackendFactory()(opts),
      sync: async () => ({ ok: false, full: true, error: new Error('nft: syntax error') }),
    });
    const r = await checkPartialSync(broken, { seed: 1, steps: 3, context });
    expect(formatPartialSyncReport(r)).toContain('syncs 1, 2, 3: sync reported failure: nft: syntax error');
    expect(formatPartialSyncReport(r)).toContain('full sync of the state after sync 3: sync reported failure: nft: syntax error');
  });
});

describe('syncOrReport', () => {
  it('turns a throwing sync into a message', async () => {
    const backend = { name: 'x', sync: () => Promise.reject(new Error('boom')) } as unknown as Backend;
    expect(await syncOrReport(backend, undefined as never, undefined as never)).toMatch(/sync threw .*: boom/);
  });
});
