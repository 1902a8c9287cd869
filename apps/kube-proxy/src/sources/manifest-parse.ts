// Turns the text of a manifest file into Services, EndpointSlices, Nodes and ServiceCIDRs. YAML or JSON,
// several documents per file, `List` kinds (List, ServiceList, ...) expanded. A bad document
// or item becomes a problem entry and never hides the good ones.

import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import type { ProxiedKind } from './kinds.js';
import { toTyped } from './typed.js';

export interface ManifestObjects {
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  nodes: V1Node[];
  serviceCIDRs: V1ServiceCIDR[];
}

export interface ManifestProblem {
  /** 1-based document number in the file; item index within a List when relevant. */
  document: number;
  item?: number;
  message: string;
  /** The document is not YAML at all (as a file caught mid-edit is), rather than a bad object. */
  invalidYaml?: true;
}

export interface ParsedManifest extends ManifestObjects {
  problems: ManifestProblem[];
  /** Kinds present but not used by a proxy (Deployments, ConfigMaps, ...), counted by kind. */
  ignored: Record<string, number>;
}

const API_VERSION: Record<ProxiedKind, string> = {
  Service: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Node: 'v1',
  ServiceCIDR: 'networking.k8s.io/v1',
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseManifest(text: string): ParsedManifest {
  const out: ParsedManifest = { services: [], endpointSlices: [], nodes: [], serviceCIDRs: [], problems: [], ignored: {} };
  const docs = parseAllDocuments(text);
  // parseAllDocuments returns an EmptyStream (no documents) for an empty or comment-only text.
  if (!Array.isArray(docs)) return out;
  docs.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length > 0) {
      out.problems.push({ document, message: `invalid YAML: ${doc.errors[0]?.message ?? 'parse error'}`, invalidYaml: true });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.problems.push({ document, message: `invalid YAML: ${(err as Error).message}`, invalidYaml: true });
      return;
    }
    if (value === null || value === undefined) return; // an empty document ("---" at the end)
    addObject(out, value, document, undefined, undefined);
  });
  return out;
}

function addObject(out: ParsedManifest, value: unknown, document: number, item: number | undefined, itemKind: string | undefined): void {
  const problem = (message: string) => out.problems.push(item === undefined ? { document, message } : { document, item, message });
  if (!isRecord(value)) {
    problem(`expected an object, got ${Array.isArray(value) ? 'an array' : typeof value}`);
    return;
  }
  const kind = typeof value.kind === 'string' ? value.kind : itemKind;
  if (kind === undefined || kind === '') {
    problem('missing kind');
    return;
  }
  if (item === undefined && kind.endsWith('List') && 'items' in value) {
    if (!Array.isArray(value.items)) {
      problem(`${kind}.items is not a list`);
      return;
    }
    // Items of a typed list (ServiceList) may omit their kind; a plain List's items must carry one.
    const implied = kind === 'List' ? undefined : kind.slice(0, -'List'.length);
    value.items.forEach((it, j) => addObject(out, it, document, j, implied));
    return;
  }
  if (kind !== 'Service' && kind !== 'EndpointSlice' && kind !== 'Node' && kind !== 'ServiceCIDR') {
    out.ignored[kind] = (out.ignored[kind] ?? 0) + 1;
    return;
  }
  const apiVersion = value.apiVersion ?? API_VERSION[kind];
  if (apiVersion !== API_VERSION[kind]) {
    problem(`${kind} apiVersion ${JSON.stringify(apiVersion)} is not supported (want ${API_VERSION[kind]})`);
    return;
  }
  const metadata = value.metadata;
  if (!isRecord(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
    problem(`${kind} without metadata.name`);
    return;
  }
  const name = metadata.name;
  try {
    addTyped(out, kind, name, value, apiVersion, metadata, problem);
  } catch (err) {
    problem(`${kind} ${name}: ${(err as Error).message}`);
  }
}

function addTyped(
  out: ParsedManifest,
  kind: ProxiedKind,
  name: string,
  value: Record<string, unknown>,
  apiVersion: unknown,
  metadata: Record<string, unknown>,
  problem: (message: string) => void,
): void {
  if (kind === 'Node') {
    out.nodes.push(toTyped('Node', { ...value, apiVersion, kind, metadata: { ...metadata, namespace: undefined } }));
    return;
  }
  if (kind === 'ServiceCIDR') {
    const cidrs = isRecord(value.spec) ? value.spec.cidrs : undefined;
    if (!Array.isArray(cidrs) || !cidrs.every((c) => typeof c === 'string')) {
      problem(`ServiceCIDR ${name}: spec.cidrs must be a list of strings`);
      return;
    }
    out.serviceCIDRs.push(toTyped('ServiceCIDR', { ...value, apiVersion, kind, metadata: { ...metadata, namespace: undefined } }));
    return;
  }
  if (metadata.namespace !== undefined && (typeof metadata.namespace !== 'string' || metadata.namespace === '')) {
    problem(`${kind} ${name}: metadata.namespace must be a non-empty string`);
    return;
  }
  // Namespaced objects without a namespace land in "default", as kubectl apply would do.
  const typedMeta = { ...metadata, namespace: metadata.namespace ?? 'default' };
  const raw = { ...value, apiVersion, kind, metadata: typedMeta };
  if (kind === 'Service') {
    if (value.spec !== undefined && !isRecord(value.spec)) {
      problem(`Service ${name}: spec must be an object`);
      return;
    }
    out.services.push(toTyped('Service', raw));
    return;
  }
  if (typeof value.addressType !== 'string') {
    problem(`EndpointSlice ${name}: missing addressType`);
    return;
  }
  if (value.endpoints !== undefined && value.endpoints !== null && !Array.isArray(value.endpoints)) {
    problem(`EndpointSlice ${name}: endpoints must be a list`);
    return;
  }
  out.endpointSlices.push(toTyped('EndpointSlice', raw));
}
