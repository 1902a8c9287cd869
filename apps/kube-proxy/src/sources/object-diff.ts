// Remembers what was last delivered to a handler for each key, so that updates carry the
// previous object and a full re-read (a relist, a manifest reload) emits only real differences.
// What is remembered is a version to compare and, per kind, as much of the object as the
// handlers need as "previous": an EndpointSlice's endpoints are held once, by the trackers.

import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '@kube-proxy-ts/core';
import { type KindHandler, objectKey } from './kinds.js';

export interface Remembering<T> {
  /** Equal strings mean the same object; undefined never equals anything. */
  version(obj: T): string | undefined;
  /** What is kept to be handed over later as the previous or the deleted object. Default: the object. */
  keep?(obj: T): T;
}

/** API objects: the same resourceVersion means the same object. */
export function resourceVersionOf(obj: KubernetesObject): string | undefined {
  const rv = obj.metadata?.resourceVersion;
  return rv === undefined || rv === '' ? undefined : rv;
}

/**
 * Objects that are never modified once made (a manifest's: an unchanged document hands back the
 * objects it gave before): the same instance is the same object.
 */
export function instanceVersions(): (obj: object) => string {
  const ids = new WeakMap<object, string>();
  let next = 0;
  return (obj) => {
    let id = ids.get(obj);
    if (id === undefined) ids.set(obj, (id = String(++next)));
    return id;
  };
}

interface Held<T> {
  readonly object: T;
  readonly version: string | undefined;
}

export class ObjectDiff<T extends KubernetesObject> {
  private readonly objects = new Map<string, Held<T>>();

  constructor(
    private readonly kind: string,
    private readonly handler: KindHandler<T>,
    private readonly remembering: Remembering<T>,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.objects.size;
  }

  /** An object appeared or changed. Returns what was emitted. */
  upsert(obj: T): 'add' | 'update' | 'none' {
    const key = objectKey(obj);
    const version = this.remembering.version(obj);
    const previous = this.objects.get(key);
    if (previous !== undefined && version !== undefined && previous.version === version) return 'none';
    this.objects.set(key, { object: this.remembering.keep ? this.remembering.keep(obj) : obj, version });
    if (previous === undefined) this.call('add', key, () => this.handler.add(obj));
    else this.call('update', key, () => this.handler.update(previous.object, obj));
    return previous === undefined ? 'add' : 'update';
  }

  /** An object went away; the handler receives `obj`, its final state. Unknown objects are ignored. */
  remove(obj: T): boolean {
    const key = objectKey(obj);
    if (!this.objects.delete(key)) return false;
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
      this.call('delete', key, () => this.handler.delete(previous.object));
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
