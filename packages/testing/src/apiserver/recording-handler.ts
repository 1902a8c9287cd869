// A ProxyEventHandler for source tests: keeps the objects it was told about (by kind and
// namespace/name), records every call, and notes every call that contradicts what it was told
// before (an add of a known object, an update whose old object is not (part of) the last one delivered, a
// delete of an unknown object), so tests can assert that a source keeps its bookkeeping straight.

import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { ProxyEventHandler } from '@kube-proxy-ts/core';

export type RecordedKind = 'Service' | 'EndpointSlice' | 'Node';

export interface RecordedCall {
  readonly kind: RecordedKind;
  readonly op: 'add' | 'update' | 'delete';
  readonly key: string;
  readonly old?: KubernetesObject;
  readonly obj: KubernetesObject;
}

function keyOf(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ''}` : (obj.metadata?.name ?? '');
}

/**
 * Whether `old` is `held` or a part of it: sources may keep less than they delivered (an
 * EndpointSlice without its endpoints), but what they hand back must be what was delivered.
 */
function partOf(old: KubernetesObject, held: KubernetesObject): boolean {
  if (old === held) return true;
  const o = old as Record<string, unknown>;
  const h = held as Record<string, unknown>;
  return Object.keys(o).every((k) => isDeepStrictEqual(o[k], h[k]));
}

export class RecordingHandler implements ProxyEventHandler {
  readonly objects: Record<RecordedKind, Map<string, KubernetesObject>> = {
    Service: new Map(),
    EndpointSlice: new Map(),
    Node: new Map(),
  };
  readonly calls: RecordedCall[] = [];
  /** Calls that contradict the objects previously delivered. */
  readonly violations: string[] = [];
  readonly synced: Record<RecordedKind, number> = { Service: 0, EndpointSlice: 0, Node: 0 };
  /** Every list of Service CIDRs handed over, oldest first. */
  readonly serviceCIDRs: (readonly string[])[] = [];

  /** namespace/name -> resourceVersion of what the handler holds, for comparing with the server. */
  versions(kind: RecordedKind): Record<string, string | undefined> {
    return Object.fromEntries([...this.objects[kind]].map(([k, o]) => [k, o.metadata?.resourceVersion]));
  }

  callsSince(index: number): RecordedCall[] {
    return this.calls.slice(index);
  }

  onServiceAdd(s: V1Service): void {
    this.add('Service', s);
  }
  onServiceUpdate(o: V1Service, s: V1Service): void {
    this.update('Service', o, s);
  }
  onServiceDelete(s: V1Service): void {
    this.delete('Service', s);
  }
  onServicesSynced(): void {
    this.synced.Service++;
  }
  onEndpointSliceAdd(s: V1EndpointSlice): void {
    this.add('EndpointSlice', s);
  }
  onEndpointSliceUpdate(o: V1EndpointSlice, s: V1EndpointSlice): void {
    this.update('EndpointSlice', o, s);
  }
  onEndpointSliceDelete(s: V1EndpointSlice): void {
    this.delete('EndpointSlice', s);
  }
  onEndpointSlicesSynced(): void {
    this.synced.EndpointSlice++;
  }
  onNodeAdd(n: V1Node): void {
    this.add('Node', n);
  }
  onNodeUpdate(o: V1Node, n: V1Node): void {
    this.update('Node', o, n);
  }
  onNodeDelete(n: V1Node): void {
    this.delete('Node', n);
  }
  onNodeSynced(): void {
    this.synced.Node++;
  }
  onServiceCIDRsChanged(cidrs: readonly string[]): void {
    this.serviceCIDRs.push(cidrs);
  }

  private add(kind: RecordedKind, obj: KubernetesObject): void {
    const key = keyOf(obj);
    if (this.objects[kind].has(key)) this.violations.push(`add of known ${kind} ${key}`);
    this.objects[kind].set(key, obj);
    this.calls.push({ kind, op: 'add', key, obj });
  }

  private update(kind: RecordedKind, old: KubernetesObject, obj: KubernetesObject): void {
    const key = keyOf(obj);
    const held = this.objects[kind].get(key);
    if (held === undefined) this.violations.push(`update of unknown ${kind} ${key}`);
    else if (!partOf(old, held)) this.violations.push(`update of ${kind} ${key}: old object is not the one last delivered`);
    this.objects[kind].set(key, obj);
    this.calls.push({ kind, op: 'update', key, old, obj });
  }

  private delete(kind: RecordedKind, obj: KubernetesObject): void {
    const key = keyOf(obj);
    if (!this.objects[kind].delete(key)) this.violations.push(`delete of unknown ${kind} ${key}`);
    this.calls.push({ kind, op: 'delete', key, obj });
  }
}
