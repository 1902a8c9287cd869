// Turns the text of a manifest file into Services, EndpointSlices, Nodes and ServiceCIDRs. YAML or JSON,
// several documents per file, `List` kinds (List, ServiceList, ...) expanded. A bad document
// or item becomes a problem entry and never hides the good ones.

import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { NOT_SIMPLE, StringTable, readBlockYaml } from './block-yaml.js';
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
  /** What each document gave, by a hash of its text: what the next parse of this file reuses. */
  readonly documents: ReadonlyMap<string, DocumentContent>;
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

/** What one document gave, problems without their document number (documents move within a file). */
export interface DocumentContent extends ManifestObjects {
  problems: Omit<ManifestProblem, 'document'>[];
  ignored: Record<string, number>;
}

function emptyContent(): DocumentContent {
  return { services: [], endpointSlices: [], nodes: [], serviceCIDRs: [], problems: [], ignored: {} };
}

const NONE: never[] = Object.freeze([]) as unknown as never[];
const NONE_IGNORED: Record<string, number> = Object.freeze({}) as Record<string, number>;

/**
 * A parsed document as it is kept for the next parse of its file: a document holds one object or
 * few, so its empty lists are one shared empty list, and the others are copied to their length.
 */
function kept(content: DocumentContent): DocumentContent {
  const list = <T>(xs: T[]): T[] => (xs.length === 0 ? NONE : xs.slice());
  return {
    services: list(content.services),
    endpointSlices: list(content.endpointSlices),
    nodes: list(content.nodes),
    serviceCIDRs: list(content.serviceCIDRs),
    problems: list(content.problems),
    ignored: Object.keys(content.ignored).length === 0 ? NONE_IGNORED : content.ignored,
  };
}

/**
 * Reads a manifest file. With `previous`, the parse of an earlier version of the same file, a
 * document whose text did not change is not read again: its objects are handed back as they were
 * (the same objects), so an edit costs the documents it touched.
 */
export function parseManifest(text: string, previous?: ParsedManifest): ParsedManifest {
  const out: ParsedManifest = { services: [], endpointSlices: [], nodes: [], serviceCIDRs: [], problems: [], ignored: {}, documents: new Map() };
  const chunks = splitDocuments(text);
  if (chunks === undefined) {
    // Directives or content on a document marker line: the whole file goes to the full parser.
    parseAllDocumentsOf(text).forEach((content, i) => merge(out, content, i + 1));
    return out;
  }
  const documents = out.documents as Map<string, DocumentContent>;
  const strings = new StringTable();
  chunks.forEach((chunk, i) => {
    const key = createHash('sha1').update(chunk).digest('base64');
    const content = documents.get(key) ?? previous?.documents.get(key) ?? kept(parseDocument(chunk, strings));
    documents.set(key, content);
    merge(out, content, i + 1);
  });
  return out;
}

function merge(out: ParsedManifest, content: DocumentContent, document: number): void {
  out.services.push(...content.services);
  out.endpointSlices.push(...content.endpointSlices);
  out.nodes.push(...content.nodes);
  out.serviceCIDRs.push(...content.serviceCIDRs);
  for (const p of content.problems) out.problems.push({ document, ...p });
  for (const [kind, n] of Object.entries(content.ignored)) out.ignored[kind] = (out.ignored[kind] ?? 0) + n;
}

const MARKER = /^---[ \t]*(#.*)?$/;

/**
 * The text of each document, numbered as the YAML parser numbers them: what comes before the first
 * "---" is a document only if it holds more than comments. Undefined when the file uses what a
 * line split cannot follow (directives, "..." or content after "---").
 */
function splitDocuments(text: string): string[] | undefined {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const chunks: string[] = [];
  let start = 0;
  let pos = 0;
  while (pos <= body.length) {
    let eol = body.indexOf('\n', pos);
    if (eol < 0) eol = body.length;
    const c = body.charCodeAt(pos);
    if (c === 45 /* - */ || c === 46 /* . */ || c === 37 /* % */) {
      const line = body.slice(pos, eol).replace(/\r$/, '');
      if (MARKER.test(line)) {
        chunks.push(body.slice(start, pos));
        start = eol + 1;
      } else if (line.startsWith('---') || line.startsWith('...') || c === 37) {
        return undefined;
      }
    }
    pos = eol + 1;
  }
  chunks.push(start <= body.length ? body.slice(start) : '');
  if (chunks.length > 0 && !/^[ \t]*[^\s#]/m.test(chunks[0] as string)) chunks.shift();
  return chunks;
}

function parseDocument(chunk: string, strings: StringTable): DocumentContent {
  const value = readBlockYaml(chunk, strings);
  if (value !== NOT_SIMPLE) return contentOf(value);
  if (/^\s*[[{]/.test(chunk)) {
    // JSON is YAML, and JSON.parse reads it as the YAML parser would, only much faster.
    try {
      return contentOf(JSON.parse(chunk));
    } catch {
      // not JSON after all: the YAML parser says what is wrong
    }
  }
  // A chunk holds at most one document; the YAML parser says what is wrong with it.
  return parseAllDocumentsOf(chunk)[0] ?? emptyContent();
}

function parseAllDocumentsOf(text: string): DocumentContent[] {
  const docs = parseAllDocuments(text);
  // parseAllDocuments returns an EmptyStream (no documents) for an empty or comment-only text.
  if (!Array.isArray(docs)) return [];
  return docs.map((doc) => {
    if (doc.errors.length > 0) {
      return { ...emptyContent(), problems: [{ message: `invalid YAML: ${doc.errors[0]?.message ?? 'parse error'}`, invalidYaml: true as const }] };
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      return { ...emptyContent(), problems: [{ message: `invalid YAML: ${(err as Error).message}`, invalidYaml: true as const }] };
    }
    return contentOf(value);
  });
}

function contentOf(value: unknown): DocumentContent {
  const content = emptyContent();
  // An empty document ("---" at the end) holds nothing.
  if (value !== null && value !== undefined) addObject(content, value, undefined, undefined);
  return content;
}

function addObject(out: DocumentContent, value: unknown, item: number | undefined, itemKind: string | undefined): void {
  const problem = (message: string) => out.problems.push(item === undefined ? { message } : { item, message });
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
    value.items.forEach((it, j) => addObject(out, it, j, implied));
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
  out: DocumentContent,
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
