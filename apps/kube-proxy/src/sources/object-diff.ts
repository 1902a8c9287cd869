// Remembers the last object of each key delivered to a handler, so that updates carry the
// previous object and a full re-read (a relist, a manifest reload) emits only real differences.

import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '@kube-proxy-ts/core';
import { type KindHandler, objectKey } from './kinds.js';

export type SameObject<T> = (a: T, b: T) => boolean;

/** API objects: the same resourceVersion means the same object. */
export function sameResourceVersion(a: KubernetesObject, b: KubernetesObject): boolean {
  const rv = a.metadata?.resourceVersion;
  return rv !== undefined && rv !== '' && rv === b.metadata?.resourceVersion;
}

export class ObjectDiff<T extends KubernetesObject> {
  private readonly objects = new Map<string, T>();

  constructor(
    private readonly kind: string,
    private readonly handler: KindHandler<T>,
    private readonly same: SameObject<T>,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.objects.size;
  }

  get(key: string): T | undefined {
    return this.objects.get(key);
  }

  /** An object appeared or changed. Returns what was emitted. */
  upsert(obj: T): 'add' | 'update' | 'none' {
    const key = objectKey(obj);
    const previous = this.objects.get(key);
    if (previous === undefined) {
      this.objects.set(key, obj);
      this.call('add', key, () => this.handler.add(obj));
      return 'add';
    }
    // Keep the object the handler holds, so the next update's old object is exactly that one.
    if (this.same(previous, obj)) return 'none';
    this.objects.set(key, obj);
    this.call('update', key, () => this.handler.update(previous, obj));
    return 'update';
  }

  /** An object went away; the handler receives `obj`, its final state. Unknown objects are ignored. */
  remove(obj: T): boolean {
    const key = objectKey(obj);
    const previous = this.objects.get(key);
    if (previous === undefined) return false;
    this.objects.delete(key);
    this.call('delete', key, () => this.handler.delete(obj));
    return true;
  }

  /** The complete current set is `objs`: delete what is missing, then add and update the rest. */
  replaceAll(objs: Iterable<T>): { added: number; updated: number; deleted: number } {
    const next = new Map<string, T>();
    for (const obj of objs) next.set(objectKey(obj), obj);
    let deleted = 0;
    for (const [key, previous] of [...this.objects]) {
      if (next.has(key)) continue;
      this.objects.delete(key);
      this.call('delete', key, () => this.handler.delete(previous));
      deleted++;
    }
    let added = 0;
    let updated = 0;
    for (const obj of next.values()) {
      const r = this.upsert(obj);
      if (r === 'add') added++;
      else if (r === 'update') updated++;
    }
    return { added, updated, deleted };
  }

  synced(): void {
    this.call('synced', '', () => this.handler.synced());
  }

  // A throwing handler must not break the source: the bookkeeping above already moved on.
  private call(op: string, key: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logger.error({ err, kind: this.kind, key, op }, 'event handler failed');
    }
  }
}
