// The kinds a source delivers, and how each one reaches a ProxyEventHandler.

import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import type { ProxyEventHandler } from '@kube-proxy-ts/core';

export type ProxiedKind = 'Service' | 'EndpointSlice' | 'Node' | 'ServiceCIDR';

/** Add/update/delete callbacks for one kind of object. */
export interface KindHandler<T extends KubernetesObject> {
  add(obj: T): void;
  update(oldObj: T, obj: T): void;
  delete(obj: T): void;
  synced(): void;
}

export function serviceHandler(h: ProxyEventHandler): KindHandler<V1Service> {
  return {
    add: (s) => h.onServiceAdd(s),
    update: (o, s) => h.onServiceUpdate(o, s),
    delete: (s) => h.onServiceDelete(s),
    synced: () => h.onServicesSynced(),
  };
}

export function endpointSliceHandler(h: ProxyEventHandler): KindHandler<V1EndpointSlice> {
  return {
    add: (s) => h.onEndpointSliceAdd(s),
    update: (o, s) => h.onEndpointSliceUpdate(o, s),
    delete: (s) => h.onEndpointSliceDelete(s),
    synced: () => h.onEndpointSlicesSynced(),
  };
}

export function nodeHandler(h: ProxyEventHandler): KindHandler<V1Node> {
  return {
    add: (n) => h.onNodeAdd(n),
    update: (o, n) => h.onNodeUpdate(o, n),
    delete: (n) => h.onNodeDelete(n),
    synced: () => h.onNodeSynced(),
  };
}

/**
 * ServiceCIDRs reach the handler as one list, as upstream's ServiceCIDRConfig hands them on: the
 * union of every object's spec.cidrs, after each change of it. A CIDR stays while any object holds it.
 */
export function serviceCIDRHandler(h: ProxyEventHandler): KindHandler<V1ServiceCIDR> {
  const byObject = new Map<string, readonly string[]>();
  let last = '';
  const emit = () => {
    const union = [...new Set([...byObject.values()].flat())].sort();
    // Status updates (conditions) leave the union as it was: no call, no sync.
    if (union.join() === last) return;
    last = union.join();
    h.onServiceCIDRsChanged?.(union);
  };
  const set = (obj: V1ServiceCIDR) => {
    byObject.set(objectKey(obj), obj.spec?.cidrs ?? []);
    emit();
  };
  return {
    add: set,
    update: (_old, obj) => set(obj),
    delete: (obj) => {
      byObject.delete(objectKey(obj));
      emit();
    },
    // ServiceCIDRs do not hold up the first sync (upstream does not wait for them either).
    synced: () => undefined,
  };
}

/** Labels that hand a Service (and its slices) to another proxy or mark it headless; upstream filters them server-side. */
export const LABEL_SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
export const LABEL_HEADLESS = 'service.kubernetes.io/headless';

/** The label selector upstream kube-proxy lists Services and EndpointSlices with (labels.Selector order: by key). */
export const PROXIED_OBJECTS_LABEL_SELECTOR = `!${LABEL_HEADLESS},!${LABEL_SERVICE_PROXY_NAME}`;

/** Whether the object passes PROXIED_OBJECTS_LABEL_SELECTOR. */
export function isProxiedByUs(obj: KubernetesObject): boolean {
  const labels = obj.metadata?.labels ?? {};
  return !(LABEL_SERVICE_PROXY_NAME in labels) && !(LABEL_HEADLESS in labels);
}

/** "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}
