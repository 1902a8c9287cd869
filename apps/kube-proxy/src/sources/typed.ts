// One shape for every object a handler sees. The generated API client turns list responses into
// typed models (timestamps become Date, unknown fields dropped); watch events and manifest files
// arrive as plain JSON. Both go through the same deserializer so they compare and read alike.

import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
// Not re-exported by the package root; the package has no exports map, so the path is stable per version.
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import type { ProxiedKind } from './kinds.js';

const MODEL: Record<ProxiedKind, string> = {
  Service: 'V1Service',
  EndpointSlice: 'V1EndpointSlice',
  Node: 'V1Node',
  ServiceCIDR: 'V1ServiceCIDR',
};

export function toTyped(kind: 'Service', raw: unknown): V1Service;
export function toTyped(kind: 'EndpointSlice', raw: unknown): V1EndpointSlice;
export function toTyped(kind: 'Node', raw: unknown): V1Node;
export function toTyped(kind: 'ServiceCIDR', raw: unknown): V1ServiceCIDR;
export function toTyped(kind: ProxiedKind, raw: unknown): KubernetesObject;
export function toTyped(kind: ProxiedKind, raw: unknown): KubernetesObject {
  return ObjectSerializer.deserialize(raw, MODEL[kind], '') as KubernetesObject;
}
