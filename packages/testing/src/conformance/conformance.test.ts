import { describe, expect, it } from 'vitest';
import type { Backend, BackendFactory } from '@kube-proxy-ts/core';
import { testContext } from '../test-context.js';
import { nodeInfo } from '../builders/node.js';
import { describeBackendConformance } from './suite.js';
import { checkPartialSync, formatPartialSyncReport, partialSyncOk } from './partial-sync.js';
import { syncOrReport } from './harness.js';
import { conformanceCheckNames, runBackendConformance, type ConformanceResult } from './checks.js';
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

describe('runBackendConformance (without vitest)', () => {
  it('runs every check in order around the hooks and passes the reference backend', async () => {
    const calls: string[] = [];
    const seen: string[] = [];
    const results = await runBackendConformance(referenceBackendFactory(), {
      context,
      seeds: [1, 2],
      hooks: {
        beforeAll: () => void calls.push('beforeAll'),
        beforeEach: () => void calls.push('beforeEach'),
        afterEach: () => void calls.push('afterEach'),
        afterAll: () => void calls.push('afterAll'),
      },
      onResult: (r) => void seen.push(r.name),
    });
    expect(results.map((r) => [r.name, r.status, r.message])).toEqual(
      conformanceCheckNames({ seeds: [1, 2] }).map((name) => [name, 'pass', undefined]),
    );
    expect(results.map((r) => r.name)).toEqual(seen);
    expect(results.map((r) => r.name)).toContain('partial syncs after random changes leave the data plane of one full sync (seed 2)');
    expect(calls).toEqual(['beforeAll', ...Array<string[]>(6).fill(['beforeEach', 'afterEach']).flat(), 'afterAll']);
  });

  it('reports a partial-sync difference and foreign state it touched, with readable messages', async () => {
    const plane = createFakePlane();
    const results = await runBackendConformance(referenceBackendFactory({ keepDeletedServices: true }), {
      context: () => testContext({ runner: plane.runner(), node }),
      sharedDataPlane: true,
      seeds: [1, 2, 3, 4, 5],
      steps: 15,
      checks: ['partialSync', 'cleanup'],
      foreignState: {
        install: () => void plane.entries.set('other/rule', 'keep me'),
        verify: () => {
          if (plane.entries.get('other/rule') !== 'keep me') throw new Error('the foreign rule is gone');
        },
      },
    });
    const byStatus = (s: ConformanceResult['status']) => results.filter((r) => r.status === s);
    expect(byStatus('fail').length).toBeGreaterThan(0);
    for (const r of byStatus('fail')) {
      expect(r.name).toMatch(/^partial syncs .* \(seed \d\)$/);
      expect(r.message).toMatch(/differs from a full sync[\s\S]*only in partial[\s\S]*events:\n {4}sync 1: /);
    }
    // cleanup() of this backend is correct and spares the foreign entry.
    expect(results.at(-1)).toMatchObject({ name: conformanceCheckNames({ checks: ['cleanup'] })[0], status: 'pass' });

    plane.entries.clear();
    const [cleanup] = await runBackendConformance(referenceBackendFactory(), {
      context: () => testContext({ runner: plane.runner(), node }),
      sharedDataPlane: true,
      checks: ['cleanup'],
      foreignState: {
        install: () => void plane.entries.set('ref/IPv4/other', 'not ours, but under the prefix cleanup() flushes'),
        verify: () => {
          if (!plane.entries.has('ref/IPv4/other')) throw new Error('the foreign entry is gone');
        },
      },
    });
    expect(cleanup).toMatchObject({ status: 'fail', message: 'the foreign entry is gone' });
  });

  it('skips the checks that need inspect() when the backend has none', async () => {
    const results = await runBackendConformance(withoutInspect, { context, seeds: [1] });
    expect(results.map((r) => r.status)).toEqual(['pass', 'pass', 'pass', 'skip', 'pass']);
    expect(results[3]!.message).toMatch(/has no inspect\(\)/);
  });

  it('fails a check that outlives its timeout', async () => {
    const slow: BackendFactory = (opts) => ({ ...referenceBackendFactory()(opts), sync: () => new Promise(() => undefined) });
    const [r] = await runBackendConformance(slow, { context, checks: ['empty'], timeoutMs: 50 });
    expect(r).toMatchObject({ status: 'fail', message: 'syncs the empty state did not finish within 50 ms' });
  });
});

describe('syncOrReport', () => {
  it('turns a throwing sync into a message', async () => {
    const backend = { name: 'x', sync: () => Promise.reject(new Error('boom')) } as unknown as Backend;
    expect(await syncOrReport(backend, undefined as never, undefined as never)).toMatch(/sync threw .*: boom/);
  });
});
