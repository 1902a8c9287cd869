// One resource's list+watch, as client-go's reflector runs it, with a few guards of its own:
//  - A list is diffed against what the handler last saw (ObjectDiff), so a relist or a restart
//    emits only real changes (including deletes of objects gone meanwhile). The objects are held
//    once, there: no second cache of every object.
//  - A watch the server ends is renewed from the last resourceVersion seen; after 410 Gone the
//    resource is listed again.
//  - A watch can stall without the connection closing: a watchdog restarts the informer when no
//    event (bookmarks included; they are requested) arrived for idleTimeoutMs.
//  - Any other error (a failed list, a dropped connection, an HTTP error, an ERROR event) rebuilds
//    the informer after a jittered, growing backoff.
//  - An optional API the server does not have (404) or does not let us list (403): said once, then
//    looked for again after a delay that grows from the first backoff to unavailableRetryMs. Not a
//    fixed long wait: a kube-apiserver that has just started answers 403 until its RBAC caches are
//    filled, and that must not cost the ServiceCIDRs for the whole interval.
//  - Every resyncPeriodMs (configSyncPeriod) the informer lists again and diffs: a change found
//    then is one the watch never delivered, and is applied and logged as such. That list asks for
//    a state not older than the last one seen, whole: the API server answers it from its watch
//    cache, so a period on every node costs no etcd read.
// Every restart is logged and counted in kubeproxy_informer_restarts_total{resource}.

import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '@kube-proxy-ts/core';
import type { Counter } from 'prom-client';
import { Backoff } from './backoff.js';
import { ObjectDiff } from './object-diff.js';
import type { ApiClient, Query, WatchEventHandler } from './rest-client.js';
import type { WatchdogOptions } from './types.js';

/** Query parameters of one list page. */
export interface ListPageRequest {
  labelSelector?: string;
  fieldSelector?: string;
  /** Unset: the whole collection in one response. */
  limit?: number;
  continue?: string;
  /** "0" on the very first list: any recent state will do, so the API server answers from its watch cache, in one response. */
  resourceVersion?: string;
  /** "NotOlderThan" on a resync's list: the state seen so far or newer, from the watch cache. */
  resourceVersionMatch?: string;
}

export interface InformerSpec<T extends KubernetesObject> {
  /** Label for logs and metrics: "services", "endpointslices", "nodes". */
  resource: string;
  /** Collection path watched, e.g. /api/v1/services. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  listPage(request: ListPageRequest): Promise<KubernetesListObject<T>>;
  /** Gives list items and watch events (plain JSON) one shape: what handlers receive and the diff keeps. */
  normalize(raw: unknown): T;
  diff: ObjectDiff<T>;
  /** Objects per list page (default 500, as client-go's reflector). */
  pageSize?: number;
  /**
   * The API may be unavailable: not served (404, a resource newer than the cluster) or not allowed
   * (403, RBAC older than it, or a starting kube-apiserver whose RBAC caches are still empty). Then
   * say so once and list again after a growing delay capped at this, without counting a restart.
   * Unset: a 404 or 403 is a failure like any other.
   */
  unavailableRetryMs?: number;
}

export interface InformerOptions {
  client: ApiClient;
  logger: Logger;
  restarts?: Counter<'resource'>;
  watchdog?: WatchdogOptions;
  /** Called once, after the first complete list reached the handler. */
  onSynced(): void;
  /** List again this long after the last complete list (configSyncPeriod); unset: never. */
  resyncPeriodMs?: number;
}

const DEFAULT_LIST_PAGE_SIZE = 500;

interface Generation {
  id: number;
  /** Started by the periodic resync, not by a failure or the start. */
  resync: boolean;
  controllers: Set<AbortController>;
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly idleTimeoutMs: number;
  private readonly watchTimeoutSeconds: () => number;
  private readonly backoff: Backoff;
  /** Delays between looks at an unavailable optional API. */
  private readonly unavailableBackoff: Backoff | undefined;
  private readonly logger: Logger;
  private current: Generation | undefined;
  private nextId = 0;
  private stopped = false;
  private synced = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** When the current watch connected; a watch that lived long enough ends a failure streak. */
  private watchHealthySince = 0;
  /** The server answered 404 or 403 for this resource, and it was logged. */
  private unavailable = false;
  /** The newest resourceVersion a list or a watch event (bookmarks included) carried. */
  private lastSeenRV: string | undefined;

  constructor(
    private readonly spec: InformerSpec<T>,
    private readonly options: InformerOptions,
  ) {
    const w = options.watchdog ?? {};
    this.idleTimeoutMs = w.idleTimeoutMs ?? 5 * 60_000;
    const maxBackoffMs = w.maxBackoffMs ?? 30_000;
    this.backoff = new Backoff({ initialMs: w.initialBackoffMs ?? 1000, maxMs: maxBackoffMs, jitter: w.jitter ?? 0.5 });
    if (spec.unavailableRetryMs !== undefined) {
      this.unavailableBackoff = new Backoff({ initialMs: w.initialBackoffMs ?? 1000, maxMs: spec.unavailableRetryMs, jitter: w.jitter ?? 0.5 });
    }
    // Ask the server to end each watch before the watchdog would, as client-go does with a random
    // timeout, so a quiet but healthy watch is renewed rather than declared stalled.
    this.watchTimeoutSeconds =
      w.watchTimeoutSeconds !== undefined
        ? () => w.watchTimeoutSeconds as number
        : () => Math.max(1, Math.floor((this.idleTimeoutMs / 1000) * (0.5 + 0.4 * Math.random())));
    this.logger = options.logger.child({ resource: spec.resource });
  }

  start(): void {
    this.launch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.restartTimer);
    clearTimeout(this.resyncTimer);
    await this.retire();
  }

  /** Tear down the current generation; its late callbacks are ignored from now on. */
  private async retire(): Promise<void> {
    const gen = this.current;
    this.current = undefined;
    if (!gen) return;
    for (const c of gen.controllers) c.abort();
    gen.controllers.clear();
  }

  private isCurrent(gen: Generation): boolean {
    return !this.stopped && this.current === gen;
  }

  private launch(resync = false): void {
    if (this.stopped) return;
    const gen: Generation = { id: ++this.nextId, resync, controllers: new Set() };
    this.current = gen;
    this.feedWatchdog(gen);
    void this.listAndWatch(gen);
  }

  private async listAndWatch(gen: Generation): Promise<void> {
    let resourceVersion: string;
    try {
      resourceVersion = await this.list(gen);
    } catch (err) {
      if (this.isCurrent(gen)) this.failed('informer stopped', err);
      return;
    }
    if (this.isCurrent(gen)) await this.watchFrom(gen, resourceVersion);
  }

  /** Watches from `resourceVersion`; renews the watch from the last one seen when the server ends it, relists after 410. */
  private async watchFrom(gen: Generation, resourceVersion: string): Promise<void> {
    let gone = false;
    const onEvent: WatchEventHandler = (type, obj) => {
      if (!this.isCurrent(gen)) return;
      if (type === 'ADDED' || type === 'MODIFIED') this.spec.diff.upsert(obj as T);
      else if (type === 'DELETED') this.spec.diff.remove(obj as T);
      else if (type === 'ERROR') gone = true; // only 410 gets here: GuardedWatch fails on any other
    };
    const onDone = (err: unknown) => {
      if (!this.isCurrent(gen)) return;
      if (gone || isGone(err)) void this.listAndWatch(gen);
      else if (err) this.failed('informer stopped', err);
      // The watch hooks keep lastSeenRV: every event of this generation, bookmarks included, went through them.
      else void this.watchFrom(gen, this.lastSeenRV ?? resourceVersion);
    };
    const query: Query = { resourceVersion, labelSelector: this.spec.labelSelector, fieldSelector: this.spec.fieldSelector };
    await new GuardedWatch(this.options.client, this.watchHooks(gen)).watch(this.spec.path, query, onEvent, onDone);
  }

  private failed(what: string, err: unknown): void {
    const unavailableBackoff = this.unavailableBackoff;
    const notServed = isNotFound(err);
    if (unavailableBackoff === undefined || !(notServed || isForbidden(err))) {
      this.restart(`${what}: ${describeError(err)}`);
      return;
    }
    const retryMs = unavailableBackoff.next();
    if (!this.unavailable) {
      this.unavailable = true;
      const fields = { path: this.spec.path, retryInMs: retryMs };
      if (notServed) this.logger.info(fields, 'the API server does not serve this resource; going on without it');
      else this.logger.warn(fields, 'not allowed to list this resource (RBAC); going on without it');
    }
    clearTimeout(this.idleTimer);
    clearTimeout(this.restartTimer);
    void this.retire();
    this.restartTimer = setTimeout(() => this.launch(), retryMs);
  }

  /** Drop the current informer and build a new one after a backoff delay. */
  private restart(reason: string): void {
    if (this.stopped) return;
    if (this.watchHealthySince > 0 && Date.now() - this.watchHealthySince > this.backoffCeiling()) this.backoff.reset();
    this.watchHealthySince = 0;
    const delayMs = this.backoff.next();
    this.options.restarts?.inc({ resource: this.spec.resource });
    this.logger.warn({ reason, delayMs, attempt: this.backoff.consecutiveFailures }, 'restarting informer');
    clearTimeout(this.idleTimer);
    clearTimeout(this.restartTimer);
    void this.retire();
    this.restartTimer = setTimeout(() => this.launch(), delayMs);
  }

  /** After each complete list: the next resync is one period from now. */
  private scheduleResync(): void {
    const period = this.options.resyncPeriodMs;
    if (period === undefined || this.stopped) return;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => {
      // A failing informer relists on its own once it recovers.
      if (this.stopped || this.current === undefined) return;
      clearTimeout(this.idleTimer);
      void this.retire();
      this.launch(true);
    }, period);
    this.resyncTimer.unref?.();
  }

  private backoffCeiling(): number {
    return this.options.watchdog?.maxBackoffMs ?? 30_000;
  }

  /** Something arrived for this generation (list done, watch opened, any watch event). */
  private feedWatchdog(gen: Generation): void {
    if (!this.isCurrent(gen)) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.isCurrent(gen)) this.restart(`no event for ${this.idleTimeoutMs} ms`);
    }, this.idleTimeoutMs);
  }

  /**
   * Lists every page, then brings the handler to exactly that state. As client-go's reflector, the
   * first list asks for resourceVersion "0": the API server answers it from its watch cache, whole
   * (the limit does not apply), instead of reading etcd page by page under the client's rate limit.
   * Later lists (after a 410 or a restart) read the current state, page by page.
   */
  private async list(gen: Generation): Promise<string> {
    const items: T[] = [];
    const fromCache = !this.synced;
    const resyncFrom = gen.resync ? this.lastSeenRV : undefined;
    let resourceVersion: string | undefined;
    let next: string | undefined;
    do {
      const first = next === undefined;
      const page = await this.spec.listPage({
        labelSelector: this.spec.labelSelector,
        fieldSelector: this.spec.fieldSelector,
        ...(first && resyncFrom !== undefined
          ? { resourceVersion: resyncFrom, resourceVersionMatch: 'NotOlderThan' }
          : { limit: this.spec.pageSize ?? DEFAULT_LIST_PAGE_SIZE, ...(next ? { continue: next } : fromCache ? { resourceVersion: '0' } : {}) }),
      });
      // A newer informer took over while this list was in flight: make this one give up quietly.
      if (!this.isCurrent(gen)) throw new Error('superseded');
      // The same compact form as watch events: the page's full objects are garbage from here on.
      for (const item of page.items) {
        try {
          items.push(this.spec.normalize(item));
        } catch (err) {
          this.logger.warn({ err: describeError(err), name: item.metadata?.name, namespace: item.metadata?.namespace }, 'skipping undecodable listed object');
        }
      }
      resourceVersion ??= page.metadata?.resourceVersion;
      next = (page.metadata as { continue?: string } | undefined)?.continue || undefined;
      this.feedWatchdog(gen);
    } while (next);
    this.lastSeenRV = resourceVersion ?? this.lastSeenRV;
    const changes = this.spec.diff.replaceAll(items);
    const missed = changes.added + changes.updated + changes.deleted;
    if (gen.resync && missed > 0) this.logger.warn({ ...changes, resourceVersion }, 'resync found changes the watch had not delivered');
    else this.logger.debug({ ...changes, count: items.length, resourceVersion, resync: gen.resync }, 'listed');
    this.scheduleResync();
    if (this.unavailable) {
      this.unavailable = false;
      this.unavailableBackoff?.reset();
      this.logger.info({ path: this.spec.path }, 'the API server serves this resource now');
    }
    if (!this.synced) {
      this.synced = true;
      this.options.onSynced();
    }
    return resourceVersion ?? '';
  }

  private watchHooks(gen: Generation): WatchHooks {
    return {
      isCurrent: () => this.isCurrent(gen),
      timeoutSeconds: () => this.watchTimeoutSeconds(),
      connected: (controller: AbortController) => {
        gen.controllers.add(controller);
        this.watchHealthySince = Date.now();
        this.feedWatchdog(gen);
      },
      closed: (controller: AbortController | undefined) => {
        if (controller) gen.controllers.delete(controller);
      },
      event: (type: string, obj: unknown) => {
        this.feedWatchdog(gen);
        const rv = (obj as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
        if (type !== 'ERROR' && typeof rv === 'string' && rv !== '') this.lastSeenRV = rv;
        if (type !== 'ERROR') {
          this.backoff.reset();
          return;
        }
        const status = obj as { code?: number; message?: string } | undefined;
        if (status?.code === 410) this.logger.info({ message: status.message }, 'watch expired (410); relisting');
        else this.logger.warn({ code: status?.code, message: status?.message }, 'watch error event');
      },
      minWatchLifetimeMs: this.options.watchdog?.initialBackoffMs ?? 1000,
      quietCloseDelayMs: () => this.backoff.next(),
      normalize: (raw: unknown) => this.spec.normalize(raw),
      logger: this.logger,
    };
  }
}

/** What a GuardedWatch reports to, and asks of, the informer generation it belongs to. */
interface WatchHooks {
  isCurrent(): boolean;
  timeoutSeconds(): number;
  connected(controller: AbortController): void;
  closed(controller: AbortController | undefined): void;
  event(type: string, obj: unknown): void;
  /** A watch that ended this quickly without delivering anything reconnects only after a backoff delay. */
  minWatchLifetimeMs: number;
  quietCloseDelayMs(): number;
  normalize(raw: unknown): unknown;
  logger: Logger;
}

/**
 * One watch request of an informer generation: it asks for bookmarks and a server-side timeout,
 * reports activity to the watchdog, converts event objects to the typed model, and makes sure a
 * superseded or stopped informer never delivers an event.
 */
class GuardedWatch {
  constructor(
    private readonly client: ApiClient,
    private readonly hooks: WatchHooks,
  ) {}

  async watch(path: string, queryParams: Query, callback: WatchEventHandler, done: (err: unknown) => void): Promise<AbortController> {
    const hooks = this.hooks;
    if (!hooks.isCurrent()) {
      const dead = new AbortController();
      dead.abort();
      return dead;
    }
    let controller: AbortController | undefined;
    let events = 0;
    let finished = false;
    const startedAt = Date.now();
    const onDone = (err: unknown) => {
      if (finished) return;
      finished = true;
      hooks.closed(controller);
      if (!hooks.isCurrent()) return;
      if (isGone(err)) hooks.logger.info({ err: describeError(err) }, 'watch expired (410); relisting');
      if (err || events > 0 || Date.now() - startedAt >= hooks.minWatchLifetimeMs) {
        done(err);
        return;
      }
      // Closed at once with nothing delivered: reconnecting immediately could spin.
      const delay = hooks.quietCloseDelayMs();
      setTimeout(() => {
        if (hooks.isCurrent()) done(null);
      }, delay);
    };
    const onEvent = (type: string, obj: unknown) => {
      if (finished || !hooks.isCurrent()) return;
      events++;
      hooks.event(type, obj);
      if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
        let typed: unknown;
        try {
          typed = hooks.normalize(obj);
        } catch (err) {
          hooks.logger.warn({ err: describeError(err), type }, 'skipping undecodable watch event');
          return;
        }
        callback(type, typed);
        return;
      }
      if (type === 'ERROR' && (obj as { code?: unknown } | undefined)?.code !== 410) {
        // Watching again from the same resourceVersion would likely fail the same way; as
        // client-go's reflector, treat it as a failure: back off, then relist.
        const status = obj as { code?: number; message?: string } | undefined;
        const err = Object.assign(new Error(`watch error: ${status?.message ?? 'unknown'}`), { statusCode: status?.code });
        // Report first: aborting makes the stream fail with an AbortError, which must not win.
        onDone(err);
        controller?.abort();
        return;
      }
      callback(type, obj);
    };
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: hooks.timeoutSeconds() };
    try {
      controller = await this.client.watch(path, params, onEvent, onDone);
    } catch (err) {
      // Watch reports request errors through done; this catches set-up errors (no cluster, bad auth config).
      onDone(err);
      const dead = new AbortController();
      dead.abort();
      return dead;
    }
    if (!hooks.isCurrent()) controller.abort();
    else if (!controller.signal.aborted) hooks.connected(controller);
    return controller;
  }
}

function isGone(err: unknown): boolean {
  return hasStatus(err, 410);
}

function isNotFound(err: unknown): boolean {
  return hasStatus(err, 404);
}

function isForbidden(err: unknown): boolean {
  return hasStatus(err, 403);
}

function hasStatus(err: unknown, code: number): boolean {
  const e = err as { statusCode?: unknown; code?: unknown } | null | undefined;
  return e?.statusCode === code || e?.code === code;
}

/** One line for a log: the API's Status message when there is one, and the HTTP or errno code. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const e = err as { statusCode?: number; code?: number | string; body?: unknown };
    const code = e.statusCode ?? e.code;
    // The generated client's ApiException packs code, body and headers into a multi-line message.
    const message = 'body' in e ? (statusMessage(e.body) ?? `HTTP ${String(code)}`) : err.message;
    return code !== undefined ? `${message} (${code})` : message;
  }
  if (err && typeof err === 'object') return JSON.stringify(err);
  return String(err);
}

function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.trim() === '' ? undefined : body.slice(0, 200);
    }
  }
  const message = (parsed as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}
