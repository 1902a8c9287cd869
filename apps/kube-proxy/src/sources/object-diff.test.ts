import type { V1Service } from '@kubernetes/client-node';
import { createTestLogger } from '@kube-proxy-ts/testing';
import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.js';
import type { KindHandler } from './kinds.js';
import { ObjectDiff, sameResourceVersion } from './object-diff.js';

const svc = (name: string, rv: string): V1Service => ({ metadata: { namespace: 'ns', name, resourceVersion: rv } });

function recorder(): KindHandler<V1Service> & { log: string[]; held: Map<string, V1Service> } {
  const log: string[] = [];
  const held = new Map<string, V1Service>();
  return {
    log,
    held,
    add: (o) => {
      log.push(`add ${o.metadata?.name}@${o.metadata?.resourceVersion}`);
      held.set(o.metadata!.name!, o);
    },
    update: (old, o) => {
      log.push(`update ${o.metadata?.name} ${old.metadata?.resourceVersion}->${o.metadata?.resourceVersion}${held.get(o.metadata!.name!) === old ? '' : ' (old not held)'}`);
      held.set(o.metadata!.name!, o);
    },
    delete: (o) => {
      log.push(`delete ${o.metadata?.name}@${o.metadata?.resourceVersion}`);
      held.delete(o.metadata!.name!);
    },
    synced: () => log.push('synced'),
  };
}

describe('ObjectDiff', () => {
  it('emits only real differences on a full replace, with the previously delivered object as old', () => {
    const h = recorder();
    const diff = new ObjectDiff('Service', h, sameResourceVersion, createTestLogger());
    diff.replaceAll([svc('a', '1'), svc('b', '2'), svc('c', '3')]);
    h.log.length = 0;
    // A relist: a unchanged (a new copy), b changed, c gone, d new.
    diff.replaceAll([svc('a', '1'), svc('b', '5'), svc('d', '6')]);
    expect(h.log).toEqual(['delete c@3', 'update b 2->5', 'add d@6']);
    h.log.length = 0;
    // The copy of `a` from the relist is not what the handler holds: the next update still names the held one.
    diff.upsert(svc('a', '7'));
    expect(h.log).toEqual(['update a 1->7']);
    expect(diff.remove(svc('zz', '9'))).toBe(false);
  });

  it('keeps its bookkeeping when the handler throws, and logs the failure', () => {
    const logger = createTestLogger();
    const h = recorder();
    const diff = new ObjectDiff('Service', { ...h, add: () => { throw new Error('boom'); } }, sameResourceVersion, logger);
    expect(diff.upsert(svc('a', '1'))).toBe('add');
    expect(diff.size).toBe(1);
    expect(diff.upsert(svc('a', '2'))).toBe('update');
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error')[0]?.fields).toMatchObject({ kind: 'Service', key: 'ns/a', op: 'add' });
  });
});

describe('Backoff', () => {
  it('doubles up to the ceiling, adds bounded jitter, and resets', () => {
    let r = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5, random: () => r });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    r = 1;
    expect(b.next()).toBe(1500);
    b.reset();
    expect(b.next()).toBe(150);
    expect(b.consecutiveFailures).toBe(1);
  });
});
