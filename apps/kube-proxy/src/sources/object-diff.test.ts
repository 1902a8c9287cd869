import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { createTestLogger } from '@kube-proxy-ts/testing';
import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.js';
import type { KindHandler } from './kinds.js';
import { ObjectDiff, instanceVersions, resourceVersionOf } from './object-diff.js';
import { keptOf } from './typed.js';

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
    const diff = new ObjectDiff('Service', h, { version: resourceVersionOf }, createTestLogger());
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

  it('treats an object without a resourceVersion as changed every time', () => {
    const h = recorder();
    const diff = new ObjectDiff('Service', h, { version: resourceVersionOf }, createTestLogger());
    diff.upsert(svc('a', ''));
    expect(diff.upsert(svc('a', ''))).toBe('update');
  });

  it('takes an object handed over again (an unchanged manifest document) as unchanged, a new one as an update', () => {
    const h = recorder();
    const diff = new ObjectDiff('Service', h, { version: instanceVersions() }, createTestLogger());
    const a = (port: number): V1Service => ({ metadata: { namespace: 'ns', name: 'a' }, spec: { ports: [{ port }] } });
    const first = a(80);
    diff.replaceAll([first]);
    expect(diff.replaceAll([first])).toEqual({ added: 0, updated: 0, deleted: 0 });
    expect(diff.replaceAll([a(81)])).toEqual({ added: 0, updated: 1, deleted: 0 });
  });

  it('keeps an EndpointSlice without its endpoints, and hands that over as the previous and the deleted object', () => {
    const seen: { op: string; slice: V1EndpointSlice }[] = [];
    const h: KindHandler<V1EndpointSlice> = {
      add: (slice) => seen.push({ op: 'add', slice }),
      update: (slice) => seen.push({ op: 'previous', slice }),
      delete: (slice) => seen.push({ op: 'delete', slice }),
      synced: () => undefined,
    };
    const keep = keptOf('EndpointSlice') as unknown as (s: V1EndpointSlice) => V1EndpointSlice;
    const diff = new ObjectDiff<V1EndpointSlice>('EndpointSlice', h, { version: resourceVersionOf, keep }, createTestLogger());
    const slice = (rv: string, ip: string): V1EndpointSlice => ({
      metadata: { namespace: 'ns', name: 's', resourceVersion: rv, labels: { 'kubernetes.io/service-name': 'svc' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [ip] }],
      ports: [{ port: 80 }],
    });
    diff.upsert(slice('1', '10.0.0.1'));
    diff.upsert(slice('2', '10.0.0.2'));
    diff.replaceAll([]);
    expect(seen.map((s) => s.op)).toEqual(['add', 'previous', 'delete']);
    expect(seen[0]!.slice.endpoints).toEqual([{ addresses: ['10.0.0.1'] }]);
    for (const { slice: kept } of seen.slice(1)) {
      expect(kept.endpoints).toBeUndefined();
      expect(kept.ports).toBeUndefined();
      expect(kept.addressType).toBe('IPv4');
    }
    expect(seen[1]!.slice.metadata).toMatchObject({ name: 's', resourceVersion: '1', labels: { 'kubernetes.io/service-name': 'svc' } });
    expect(seen[2]!.slice.metadata?.resourceVersion).toBe('2');
  });

  it('keeps its bookkeeping when the handler throws, and logs the failure', () => {
    const logger = createTestLogger();
    const h = recorder();
    const diff = new ObjectDiff('Service', { ...h, add: () => { throw new Error('boom'); } }, { version: resourceVersionOf }, logger);
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
