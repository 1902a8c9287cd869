// An API server for tests that speaks the real list/watch protocol for Services,
// EndpointSlices (discovery.k8s.io/v1), Nodes and, when asked, ServiceCIDRs (networking.k8s.io/v1)
// over plain HTTP, so the real client-node
// informers can be driven through the failures a cluster produces: dropped and stalled watches,
// compacted history (410 Gone), slow and failing responses.
//
// Protocol points followed:
//  - list: resourceVersion ""/unset (most recent), "0" (any, from the watch cache: whole, the limit
//    ignored), N with resourceVersionMatch=Exact (as of N, 410 once compacted); limit + continue
//    (410 when the continue snapshot is compacted).
//  - watch: unset/"0" starts with synthetic ADDED events for the current state; N replays history
//    after N, or sends an ERROR event with a 410 Status and closes when N is compacted (the watch
//    cache answers 200 and then the error). Selector-filtered watches turn a change that moves an
//    object in or out of the selection into ADDED or DELETED. allowWatchBookmarks gives periodic
//    BOOKMARK events; timeoutSeconds ends the watch cleanly. Events are newline-delimited JSON in
//    a chunked response.

import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type Matcher, SelectorError, parseFieldSelector, parseLabelSelector } from './selectors.js';
import { ExpiredError, ObjectStore, RESOURCES, type ResourceName, type StoredEvent, type StoredObject } from './store.js';

export type Verb = 'list' | 'watch';

export interface RecordedRequest {
  readonly verb: Verb;
  readonly resource: ResourceName;
  readonly namespace?: string;
  readonly query: Readonly<Record<string, string>>;
}

export interface TestApiServerOptions {
  /** Interval of BOOKMARK events on watches that allow them (default 1 s). */
  bookmarkIntervalMs?: number;
  /** How a watch from a compacted resourceVersion fails: an ERROR event (default, as the watch cache) or an HTTP 410. */
  expiredWatch?: 'event' | 'status';
  /** Revision the store starts at (default 1000). */
  initialResourceVersion?: number;
  /**
   * The resources served; requests for the others are answered 404, as by a cluster without that
   * API. Default: all but servicecidrs (a cluster before Kubernetes 1.33).
   */
  served?: readonly ResourceName[];
}

export interface FailureRule {
  /** How many matching requests fail (default 1). */
  count?: number;
  status: number;
  verb?: Verb;
  resource?: ResourceName;
}

interface OpenWatch {
  readonly resource: ResourceName;
  readonly res: ServerResponse;
  readonly socket: Socket;
  stalled: boolean;
  ended: boolean;
  finish(): void;
}

const STATUS_REASON: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  410: 'Expired',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

function status(code: number, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: STATUS_REASON[code] ?? 'Unknown', code };
}

function routeOf(pathname: string): { resource: ResourceName; namespace?: string } | undefined {
  let m: RegExpMatchArray | null;
  if ((m = pathname.match(/^\/api\/v1\/(services|nodes)$/))) return { resource: m[1] as ResourceName };
  if ((m = pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/services$/))) return { resource: 'services', namespace: decodeURIComponent(m[1] as string) };
  if (pathname === '/apis/discovery.k8s.io/v1/endpointslices') return { resource: 'endpointslices' };
  if (pathname === '/apis/networking.k8s.io/v1/servicecidrs') return { resource: 'servicecidrs' };
  if ((m = pathname.match(/^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/))) {
    return { resource: 'endpointslices', namespace: decodeURIComponent(m[1] as string) };
  }
  return undefined;
}

function isTrue(v: string | undefined): boolean {
  return v === 'true' || v === '1';
}

interface ContinueToken {
  rv: number;
  after: string;
}

function keyOf(o: StoredObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

export class TestApiServer {
  readonly store: ObjectStore;
  /** Every list and watch request received, oldest first. */
  readonly requests: RecordedRequest[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<OpenWatch>();
  private readonly failures: Array<Required<Pick<FailureRule, 'count' | 'status'>> & FailureRule> = [];
  private latency: Record<Verb, number> = { list: 0, watch: 0 };
  private readonly bookmarkIntervalMs: number;
  private readonly expiredWatch: 'event' | 'status';
  private readonly served: ReadonlySet<ResourceName>;
  private baseUrl = '';

  private constructor(options: TestApiServerOptions) {
    this.store = new ObjectStore(options.initialResourceVersion);
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000;
    this.expiredWatch = options.expiredWatch ?? 'event';
    this.served = new Set(options.served ?? ['services', 'endpointslices', 'nodes']);
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.sendJson(res, 500, status(500, (err as Error).message));
        else res.destroy();
      });
    });
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Starts a server on 127.0.0.1 with a free port. */
  static async start(options: TestApiServerOptions = {}): Promise<TestApiServer> {
    const s = new TestApiServer(options);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(0, '127.0.0.1', () => resolve());
    });
    s.baseUrl = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  get url(): string {
    return this.baseUrl;
  }

  // --- objects -------------------------------------------------------------------------------

  apply(resource: ResourceName, obj: object): StoredObject {
    return this.store.apply(resource, obj);
  }

  create(resource: ResourceName, obj: object): StoredObject {
    return this.store.create(resource, obj);
  }

  update(resource: ResourceName, obj: object): StoredObject {
    return this.store.update(resource, obj);
  }

  delete(resource: ResourceName, namespace: string | undefined, name: string): StoredObject {
    return this.store.delete(resource, namespace, name);
  }

  /** Current objects of a resource (all namespaces). */
  list(resource: ResourceName): StoredObject[] {
    return this.store.list(resource);
  }

  /** Forgets history up to `resourceVersion` (default: everything so far). */
  compact(resourceVersion?: number): void {
    this.store.compact(resourceVersion);
  }

  // --- failures ------------------------------------------------------------------------------

  /** Ends every open watch: 'end' closes the stream cleanly, 'reset' destroys the connection. Returns how many. */
  dropWatches(mode: 'end' | 'reset' = 'end', resource?: ResourceName): number {
    let n = 0;
    for (const w of [...this.watches]) {
      if (resource && w.resource !== resource) continue;
      n++;
      if (mode === 'reset') {
        w.finish();
        w.socket.destroy();
      } else {
        w.finish();
        w.res.end();
      }
    }
    return n;
  }

  /** Open watches receive an ERROR event with a Status of `code` and are closed, as on a server-side failure. */
  failWatches(code: number, message: string, resource?: ResourceName): number {
    let n = 0;
    for (const w of [...this.watches]) {
      if ((resource && w.resource !== resource) || w.stalled) continue;
      n++;
      w.finish();
      w.res.end(`${JSON.stringify({ type: 'ERROR', object: status(code, message) })}\n`);
    }
    return n;
  }

  /**
   * Open watches go silent for good, as behind a dead NAT entry or a hung proxy: no events, no
   * bookmarks, no timeout, the connection stays open. Watches opened later are healthy.
   */
  stallWatches(resource?: ResourceName): number {
    let n = 0;
    for (const w of this.watches) {
      if ((resource && w.resource !== resource) || w.stalled) continue;
      w.stalled = true;
      n++;
    }
    return n;
  }

  /** Delays responses (before the status line) by `ms` for list and/or watch requests. */
  setLatency(latency: Partial<Record<Verb, number>>): void {
    this.latency = { ...this.latency, ...latency };
  }

  /** The next matching requests are answered with an error Status. */
  failRequests(rule: FailureRule): void {
    this.failures.push({ ...rule, count: rule.count ?? 1 });
  }

  /** Open, not stalled watches, optionally of one resource. */
  activeWatches(resource?: ResourceName): number {
    let n = 0;
    for (const w of this.watches) if (!w.stalled && (!resource || w.resource === resource)) n++;
    return n;
  }

  requestsOf(verb: Verb, resource?: ResourceName): RecordedRequest[] {
    return this.requests.filter((r) => r.verb === verb && (!resource || r.resource === resource));
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.finish();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // --- protocol ------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = routeOf(url.pathname);
    // A resource not served is an unknown path, as on a cluster without that API: not recorded.
    if (!route || !this.served.has(route.resource)) {
      this.sendJson(res, 404, status(404, `the server could not find the requested resource (${url.pathname})`));
      return;
    }
    if (req.method !== 'GET') {
      this.sendJson(res, 405, status(405, `${req.method} is not supported by this server`));
      return;
    }
    const query = Object.fromEntries(url.searchParams.entries());
    const verb: Verb = isTrue(query.watch) ? 'watch' : 'list';
    this.requests.push({ verb, resource: route.resource, ...(route.namespace ? { namespace: route.namespace } : {}), query });

    const delay = this.latency[verb];
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (req.destroyed) return;

    const failure = this.failures.find((f) => f.count > 0 && (!f.verb || f.verb === verb) && (!f.resource || f.resource === route.resource));
    if (failure) {
      failure.count--;
      this.sendJson(res, failure.status, status(failure.status, `injected failure for ${verb} ${route.resource}`));
      return;
    }

    let matches: Matcher;
    try {
      const labels = parseLabelSelector(query.labelSelector);
      const fields = parseFieldSelector(query.fieldSelector);
      const ns = route.namespace;
      matches = (o) => (!ns || o.metadata.namespace === ns) && labels(o) && fields(o);
    } catch (err) {
      if (err instanceof SelectorError) {
        this.sendJson(res, 400, status(400, err.message));
        return;
      }
      throw err;
    }
    if (verb === 'watch') this.serveWatch(req, res, route.resource, query, matches);
    else this.serveList(res, route.resource, query, matches);
  }

  private serveList(res: ServerResponse, resource: ResourceName, query: Record<string, string>, matches: Matcher): void {
    const info = RESOURCES[resource];
    let atRv = this.store.resourceVersion;
    let after: string | undefined;
    if (query.continue) {
      let token: ContinueToken;
      try {
        token = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')) as ContinueToken;
        if (typeof token.rv !== 'number' || typeof token.after !== 'string') throw new Error('bad token');
      } catch {
        this.sendJson(res, 400, status(400, 'continue key is not valid'));
        return;
      }
      atRv = token.rv;
      after = token.after;
    } else if (query.resourceVersion && query.resourceVersion !== '0' && query.resourceVersionMatch === 'Exact') {
      atRv = Number(query.resourceVersion);
      if (!Number.isInteger(atRv)) {
        this.sendJson(res, 400, status(400, `invalid resource version "${query.resourceVersion}"`));
        return;
      }
    }
    let items: StoredObject[];
    try {
      items = this.store.list(resource, atRv).filter(matches);
    } catch (err) {
      if (err instanceof ExpiredError) {
        const message = query.continue
          ? 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.'
          : `The resourceVersion for the provided list is too old: ${err.message}`;
        this.sendJson(res, 410, status(410, message));
        return;
      }
      throw err;
    }
    if (after !== undefined) items = items.filter((o) => keyOf(o) > (after as string));
    // resourceVersion "0" is answered from the watch cache, which does not paginate: the limit does not apply.
    const fromCache = query.resourceVersion === '0' && !query.continue;
    const limit = query.limit && !fromCache ? Number(query.limit) : 0;
    const metadata: Record<string, unknown> = { resourceVersion: String(atRv) };
    if (limit > 0 && items.length > limit) {
      const remaining = items.length - limit;
      items = items.slice(0, limit);
      const token: ContinueToken = { rv: atRv, after: keyOf(items[items.length - 1] as StoredObject) };
      metadata.continue = Buffer.from(JSON.stringify(token)).toString('base64url');
      metadata.remainingItemCount = remaining;
    }
    // List items carry neither kind nor apiVersion: the list's kind says it.
    const bare = items.map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
    this.sendJson(res, 200, { kind: info.listKind, apiVersion: info.apiVersion, metadata, items: bare });
  }

  private serveWatch(req: IncomingMessage, res: ServerResponse, resource: ResourceName, query: Record<string, string>, matches: Matcher): void {
    const info = RESOURCES[resource];
    const rvParam = query.resourceVersion ?? '';
    let backlog: Array<{ type: string; object: unknown }>;
    if (rvParam === '' || rvParam === '0') {
      backlog = this.store.list(resource).filter(matches).map((object) => ({ type: 'ADDED', object }));
    } else {
      const since = Number(rvParam);
      if (!Number.isInteger(since)) {
        this.sendJson(res, 400, status(400, `invalid resource version "${rvParam}"`));
        return;
      }
      try {
        backlog = this.store.eventsSince(resource, since).flatMap((e) => translate(e, matches));
      } catch (err) {
        if (!(err instanceof ExpiredError)) throw err;
        if (this.expiredWatch === 'status') {
          this.sendJson(res, 410, status(410, err.message));
          return;
        }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, err.message) })}\n`);
        return;
      }
    }

    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const timers: NodeJS.Timeout[] = [];
    const w: OpenWatch = {
      resource,
      res,
      socket: req.socket,
      stalled: false,
      ended: false,
      finish: () => {
        if (w.ended) return;
        w.ended = true;
        unsubscribe();
        for (const t of timers) clearTimeout(t);
        this.watches.delete(w);
      },
    };
    const send = (type: string, object: unknown) => {
      if (!w.ended && !w.stalled) res.write(`${JSON.stringify({ type, object })}\n`);
    };
    const unsubscribe = this.store.onEvent((e) => {
      if (e.resource !== resource) return;
      for (const ev of translate(e, matches)) send(ev.type, ev.object);
    });
    this.watches.add(w);
    res.on('close', () => w.finish());
    for (const ev of backlog) send(ev.type, ev.object);

    if (isTrue(query.allowWatchBookmarks)) {
      const interval = setInterval(() => {
        send('BOOKMARK', { kind: info.kind, apiVersion: info.apiVersion, metadata: { resourceVersion: String(this.store.resourceVersion) } });
      }, this.bookmarkIntervalMs);
      timers.push(interval);
    }
    const timeoutSeconds = Number(query.timeoutSeconds);
    if (timeoutSeconds > 0) {
      timers.push(
        setTimeout(() => {
          // A stalled watch never ends by itself: that is what makes a stall dangerous.
          if (w.stalled) return;
          w.finish();
          res.end();
        }, timeoutSeconds * 1000),
      );
    }
  }

  private sendJson(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}

/** One stored event as a watch with selector `matches` sees it. */
function translate(e: StoredEvent, matches: Matcher): Array<{ type: string; object: unknown }> {
  const now = e.type !== 'DELETED' && matches(e.object);
  const before = e.previous !== undefined && matches(e.previous);
  if (e.type === 'ADDED') return now ? [{ type: 'ADDED', object: e.object }] : [];
  if (e.type === 'DELETED') return before ? [{ type: 'DELETED', object: e.object }] : [];
  if (now && before) return [{ type: 'MODIFIED', object: e.object }];
  if (now) return [{ type: 'ADDED', object: e.object }];
  if (before) return [{ type: 'DELETED', object: e.object }];
  return [];
}
