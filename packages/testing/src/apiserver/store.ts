// The state of the test API server: objects of a few resources under one global
// resourceVersion counter (as etcd's revision), the event history watches replay from, and
// compaction, after which a watch or list from an older resourceVersion gets 410 Gone.

export type ResourceName = 'services' | 'endpointslices' | 'nodes' | 'servicecidrs';

export interface ResourceInfo {
  readonly kind: string;
  readonly listKind: string;
  readonly apiVersion: string;
  readonly namespaced: boolean;
  /** Path prefix of the API group version: /api/v1 or /apis/<group>/<version>. */
  readonly prefix: string;
}

export const RESOURCES: Readonly<Record<ResourceName, ResourceInfo>> = {
  services: { kind: 'Service', listKind: 'ServiceList', apiVersion: 'v1', namespaced: true, prefix: '/api/v1' },
  endpointslices: {
    kind: 'EndpointSlice',
    listKind: 'EndpointSliceList',
    apiVersion: 'discovery.k8s.io/v1',
    namespaced: true,
    prefix: '/apis/discovery.k8s.io/v1',
  },
  nodes: { kind: 'Node', listKind: 'NodeList', apiVersion: 'v1', namespaced: false, prefix: '/api/v1' },
  servicecidrs: {
    kind: 'ServiceCIDR',
    listKind: 'ServiceCIDRList',
    apiVersion: 'networking.k8s.io/v1',
    namespaced: false,
    prefix: '/apis/networking.k8s.io/v1',
  },
};

/** A stored object: plain JSON as the server would serialize it. */
export type StoredObject = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; namespace?: string; resourceVersion: string; labels?: Record<string, string> };
};

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoredEvent {
  readonly rv: number;
  readonly resource: ResourceName;
  readonly type: EventType;
  readonly object: StoredObject;
  /** The object before this event (MODIFIED, DELETED); watches with selectors need it. */
  readonly previous?: StoredObject;
}

export class ExpiredError extends Error {
  constructor(
    readonly requested: number,
    readonly oldest: number,
  ) {
    super(`too old resource version: ${requested} (${oldest})`);
  }
}

export class ConflictError extends Error {}
export class NotFoundError extends Error {}

function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export class ObjectStore {
  private revision: number;
  private compactedRevision: number;
  private readonly current = new Map<ResourceName, Map<string, StoredObject>>();
  /** State of each resource at compactedRevision; history replays from there. */
  private base = new Map<ResourceName, Map<string, StoredObject>>();
  private history: StoredEvent[] = [];
  private readonly listeners = new Set<(event: StoredEvent) => void>();
  private uidCounter = 0;

  constructor(initialRevision = 1000) {
    this.revision = initialRevision;
    this.compactedRevision = initialRevision;
    for (const r of Object.keys(RESOURCES) as ResourceName[]) {
      this.current.set(r, new Map());
      this.base.set(r, new Map());
    }
  }

  get resourceVersion(): number {
    return this.revision;
  }

  /** The oldest resourceVersion a watch may still start from. */
  get oldestResourceVersion(): number {
    return this.compactedRevision;
  }

  onEvent(listener: (event: StoredEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(resource: ResourceName, namespace: string | undefined, name: string): StoredObject | undefined {
    return this.map(resource).get(keyOf(RESOURCES[resource].namespaced ? namespace : undefined, name));
  }

  /** Creates or updates `obj` (server-set fields are filled in) and returns what is stored. */
  apply(resource: ResourceName, obj: object): StoredObject {
    const input = this.normalizeInput(resource, obj);
    const key = keyOf(input.metadata.namespace, input.metadata.name);
    const previous = this.map(resource).get(key);
    const rv = ++this.revision;
    const info = RESOURCES[resource];
    const stored: StoredObject = {
      ...input,
      apiVersion: info.apiVersion,
      kind: info.kind,
      metadata: {
        ...input.metadata,
        uid: previous?.metadata.uid ?? input.metadata.uid ?? `00000000-0000-4000-8000-${String(++this.uidCounter).padStart(12, '0')}`,
        creationTimestamp: previous?.metadata.creationTimestamp ?? input.metadata.creationTimestamp ?? new Date(0).toISOString(),
        resourceVersion: String(rv),
      },
    };
    this.map(resource).set(key, stored);
    this.record(previous ? { rv, resource, type: 'MODIFIED', object: stored, previous } : { rv, resource, type: 'ADDED', object: stored });
    return stored;
  }

  create(resource: ResourceName, obj: object): StoredObject {
    const input = this.normalizeInput(resource, obj);
    if (this.get(resource, input.metadata.namespace, input.metadata.name)) throw new ConflictError(`${resource} ${keyOf(input.metadata.namespace, input.metadata.name)} already exists`);
    return this.apply(resource, input);
  }

  update(resource: ResourceName, obj: object): StoredObject {
    const input = this.normalizeInput(resource, obj);
    if (!this.get(resource, input.metadata.namespace, input.metadata.name)) throw new NotFoundError(`${resource} ${keyOf(input.metadata.namespace, input.metadata.name)} not found`);
    return this.apply(resource, input);
  }

  delete(resource: ResourceName, namespace: string | undefined, name: string): StoredObject {
    const key = keyOf(RESOURCES[resource].namespaced ? namespace : undefined, name);
    const previous = this.map(resource).get(key);
    if (!previous) throw new NotFoundError(`${resource} ${key} not found`);
    this.map(resource).delete(key);
    const rv = ++this.revision;
    // The object of a DELETED event carries the revision of the deletion.
    const object: StoredObject = { ...previous, metadata: { ...previous.metadata, resourceVersion: String(rv) } };
    this.record({ rv, resource, type: 'DELETED', object, previous });
    return object;
  }

  /** The objects of `resource` as of `atRevision` (default: now), sorted by key as etcd lists them. */
  list(resource: ResourceName, atRevision?: number): StoredObject[] {
    let state: Map<string, StoredObject>;
    if (atRevision === undefined || atRevision >= this.revision) {
      state = this.map(resource);
    } else {
      if (atRevision < this.compactedRevision) throw new ExpiredError(atRevision, this.compactedRevision);
      state = new Map(this.base.get(resource));
      for (const e of this.history) {
        if (e.rv > atRevision) break;
        if (e.resource === resource) applyEvent(state, e);
      }
    }
    return [...state.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
  }

  /** Events of `resource` after `revision`; ExpiredError when history no longer reaches back that far. */
  eventsSince(resource: ResourceName, revision: number): StoredEvent[] {
    if (revision < this.compactedRevision) throw new ExpiredError(revision, this.compactedRevision);
    return this.history.filter((e) => e.rv > revision && e.resource === resource);
  }

  /** Forgets history up to `revision` (default: all of it), like an etcd compaction. */
  compact(revision = this.revision): void {
    const to = Math.min(revision, this.revision);
    if (to <= this.compactedRevision) return;
    const nextBase = new Map<ResourceName, Map<string, StoredObject>>();
    for (const r of Object.keys(RESOURCES) as ResourceName[]) nextBase.set(r, new Map(this.base.get(r)));
    const kept: StoredEvent[] = [];
    for (const e of this.history) {
      if (e.rv <= to) applyEvent(nextBase.get(e.resource) as Map<string, StoredObject>, e);
      else kept.push(e);
    }
    this.base = nextBase;
    this.history = kept;
    this.compactedRevision = to;
  }

  private map(resource: ResourceName): Map<string, StoredObject> {
    return this.current.get(resource) as Map<string, StoredObject>;
  }

  private record(event: StoredEvent): void {
    this.history.push(event);
    for (const l of this.listeners) l(event);
  }

  private normalizeInput(resource: ResourceName, obj: object): StoredObject {
    const copy = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
    const metadata = copy.metadata as Record<string, unknown> | undefined;
    if (!metadata || typeof metadata.name !== 'string' || metadata.name === '') throw new Error(`${resource}: metadata.name is required`);
    if (RESOURCES[resource].namespaced) {
      if (typeof metadata.namespace !== 'string' || metadata.namespace === '') metadata.namespace = 'default';
    } else {
      delete metadata.namespace;
    }
    return copy as StoredObject;
  }
}

function applyEvent(state: Map<string, StoredObject>, e: StoredEvent): void {
  const key = keyOf(e.object.metadata.namespace, e.object.metadata.name);
  if (e.type === 'DELETED') state.delete(key);
  else state.set(key, e.object);
}
