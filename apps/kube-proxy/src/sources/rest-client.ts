// The proxy's API client: JSON over one keep-alive agent, with what client-go does around every
// request: the client-side rate limit of clientConnection.qps/burst, and the rest_client_* metrics
// dashboards query. Lists and watches are plain JSON: the source converts objects itself
// (typed.ts), so no generated API model is needed.
//
// Node's http diagnostics channels report each request made through the client's agent: its
// method, when its response headers came, and its status.
//
// As client-go: watches are not rate limited (a watch is one long request; its events cost no
// request); a watch is counted in rest_client_requests_total once its response headers arrive,
// and only requests that end (lists, gets) feed rest_client_request_duration_seconds, from the
// request's start to its response's end. A request that fails before any response counts as
// code "<error>".

import http, { type Agent, type ClientRequest, type IncomingMessage } from 'node:http';
import diagnostics from 'node:diagnostics_channel';
import https, { type RequestOptions } from 'node:https';
import type { Clock } from '@kube-proxy-ts/core';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ClusterAccess } from './kubeconfig.js';

/** client-go's rest.DefaultQPS and DefaultBurst: what a qps or burst of 0 means. */
export const DEFAULT_QPS = 5;
export const DEFAULT_BURST = 10;

/** client-go's buckets for the request and rate-limiter latencies. */
const LATENCY_BUCKETS = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60];

/**
 * A token bucket as client-go's flowcontrol limiter (golang.org/x/time/rate): it starts full with
 * `burst` tokens and refills at `qps` per second; each request takes one token, waiting its turn
 * (first come, first served) when none is left.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly qps: number,
    readonly burst: number,
    private readonly clock: Pick<Clock, 'now' | 'setTimeout'>,
  ) {
    if (!(qps > 0) || !Number.isFinite(qps)) throw new Error(`rate limit qps must be a positive number, got ${qps}`);
    if (!Number.isInteger(burst) || burst < 1) throw new Error(`rate limit burst must be a positive integer, got ${burst}`);
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Takes a token now; returns how many ms the caller must wait before using it. */
  reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.qps) / 1000);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.qps;
  }

  /** Resolves when the caller may send its request; with the ms it waited. */
  async wait(): Promise<number> {
    const ms = this.reserve();
    if (ms > 0) await new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms));
    return ms;
  }
}

/** clientConnection.qps/burst as client-go reads them: 0 means the default, a negative qps no limit. */
export function clientRateLimit(qps: number, burst: number, clock: Pick<Clock, 'now' | 'setTimeout'>): TokenBucket | undefined {
  if (qps < 0) return undefined;
  return new TokenBucket(qps === 0 ? DEFAULT_QPS : qps, burst === 0 ? DEFAULT_BURST : Math.max(1, Math.floor(burst)), clock);
}

export interface RestClientMetrics {
  readonly requests: Counter<'code' | 'method' | 'host'>;
  readonly duration: Histogram<'verb' | 'host'>;
  readonly rateLimiterDuration: Histogram<'verb' | 'host'>;
}

/** client-go's rest_client_* series (component-base's restclient metrics), registered once per registry. */
export function restClientMetrics(registry: Registry): RestClientMetrics {
  const existing = <M>(name: string) => registry.getSingleMetric(name) as M | undefined;
  return {
    requests:
      existing<Counter<'code' | 'method' | 'host'>>('rest_client_requests_total') ??
      new Counter({ name: 'rest_client_requests_total', help: 'Number of HTTP requests, partitioned by status code, method, and host.', labelNames: ['code', 'method', 'host'], registers: [registry] }),
    duration:
      existing<Histogram<'verb' | 'host'>>('rest_client_request_duration_seconds') ??
      new Histogram({ name: 'rest_client_request_duration_seconds', help: 'Request latency in seconds. Broken down by verb, and host.', labelNames: ['verb', 'host'], buckets: LATENCY_BUCKETS, registers: [registry] }),
    rateLimiterDuration:
      existing<Histogram<'verb' | 'host'>>('rest_client_rate_limiter_duration_seconds') ??
      new Histogram({ name: 'rest_client_rate_limiter_duration_seconds', help: 'Client side rate limiter latency in seconds. Broken down by verb, and host.', labelNames: ['verb', 'host'], buckets: LATENCY_BUCKETS, registers: [registry] }),
  };
}

/** What a tracked agent's request is recorded under. */
interface Tracked {
  readonly metrics: RestClientMetrics;
  readonly host: string;
  readonly now: () => number;
}

interface InFlight {
  readonly tracked: Tracked;
  readonly startedAt: number;
  counted: boolean;
}

const trackedAgents = new WeakMap<Agent, Tracked>();
const inFlight = new WeakMap<ClientRequest, InFlight>();
let subscribed = false;

function isWatch(request: ClientRequest): boolean {
  return new URLSearchParams(request.path.split('?')[1] ?? '').get('watch') === 'true';
}

function count(request: ClientRequest, flight: InFlight, code: string): void {
  if (flight.counted) return;
  flight.counted = true;
  flight.tracked.metrics.requests.inc({ code, method: request.method, host: flight.tracked.host });
}

// One subscription for the process; each message is looked up by its request's agent.
function subscribe(): void {
  if (subscribed) return;
  subscribed = true;
  diagnostics.subscribe('http.client.request.start', (message) => {
    // ClientRequest's agent is documented but missing from @types/node.
    const { request } = message as { request: ClientRequest & { agent?: Agent } };
    const tracked = request.agent ? trackedAgents.get(request.agent) : undefined;
    if (!tracked) return;
    const flight: InFlight = { tracked, startedAt: tracked.now(), counted: false };
    inFlight.set(request, flight);
    // Node versions before the http.client.request.error channel report failures only here.
    request.once('error', () => count(request, flight, '<error>'));
  });
  diagnostics.subscribe('http.client.response.finish', (message) => {
    const { request, response } = message as { request: ClientRequest; response: IncomingMessage };
    const flight = inFlight.get(request);
    if (!flight) return;
    count(request, flight, String(response.statusCode));
    if (isWatch(request)) return;
    response.once('close', () => {
      const { metrics, host, now } = flight.tracked;
      metrics.duration.observe({ verb: request.method, host }, (now() - flight.startedAt) / 1000);
    });
  });
}

export interface RestClientOptions {
  /** Where the rest_client_* series go; none recorded when unset. */
  readonly registry?: Registry;
  /** clientConnection.qps and burst; no rate limit when unset. */
  readonly qps?: number;
  readonly burst?: number;
  readonly clock?: Pick<Clock, 'now' | 'setTimeout'>;
}

const realTime: Pick<Clock, 'now' | 'setTimeout'> = { now: () => performance.now(), setTimeout: (fn, ms) => setTimeout(fn, ms) };

export type Query = Record<string, string | number | boolean | undefined>;

/** An HTTP error answer of the API server: its code and its body (a Status object when it sent one). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: unknown,
  ) {
    const message = (body as { message?: unknown } | null)?.message;
    super(typeof message === 'string' ? message : `HTTP ${statusCode}`);
    this.name = 'ApiError';
  }
}

/** Receives one watch event; `object` is the event's object as JSON (a Status for ERROR). */
export type WatchEventHandler = (type: string, object: unknown) => void;

/**
 * Every API call of the proxy goes through one of these: the cluster and credentials of `access`,
 * the rate limit and the metrics above.
 */
export class ApiClient {
  private readonly limiter: TokenBucket | undefined;
  private readonly metrics: RestClientMetrics | undefined;
  private readonly clock: Pick<Clock, 'now' | 'setTimeout'>;
  private readonly agent: Agent;
  private readonly plain: boolean;
  /** The host label: the API server's host[:port] as written in the kubeconfig, like Go's url.Host. */
  readonly host: string;

  constructor(
    readonly access: ClusterAccess,
    options: RestClientOptions = {},
  ) {
    this.clock = options.clock ?? realTime;
    this.limiter = options.qps !== undefined ? clientRateLimit(options.qps, options.burst ?? 0, this.clock) : undefined;
    this.metrics = options.registry ? restClientMetrics(options.registry) : undefined;
    const url = new URL(access.server);
    this.host = url.host;
    this.plain = url.protocol === 'http:';
    const { ca, cert, key, insecureSkipTLSVerify, serverName } = access.tls;
    this.agent = this.plain
      ? new http.Agent({ keepAlive: true })
      : new https.Agent({
          keepAlive: true,
          ...(ca ? { ca } : {}),
          ...(cert ? { cert } : {}),
          ...(key ? { key } : {}),
          rejectUnauthorized: !insecureSkipTLSVerify,
          ...(serverName ? { servername: serverName } : {}),
        });
    if (this.metrics) {
      subscribe();
      trackedAgents.set(this.agent, { metrics: this.metrics, host: this.host, now: () => this.clock.now() });
    }
  }

  /** A GET (a list, a get): rate limited. */
  async get<T>(path: string, query: Query = {}): Promise<T> {
    return this.call<T>('GET', path, query);
  }

  /** A POST (a create): rate limited. */
  async post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, {}, body);
  }

  /**
   * A watch: each event line goes to `onEvent`; `onDone` is called once, with null when the server
   * ended the watch or it was aborted, or with the error (an ApiError for an HTTP error answer). Not
   * rate limited, as client-go's watches are not. Resolves once the request is sent, with what
   * aborts it.
   */
  async watch(path: string, query: Query, onEvent: WatchEventHandler, onDone: (err: unknown) => void): Promise<AbortController> {
    const controller = new AbortController();
    let finished = false;
    const done = (err: unknown) => {
      if (finished) return;
      finished = true;
      onDone(controller.signal.aborted ? null : err);
    };
    const request = await this.open('GET', path, { ...query, watch: true }, controller.signal);
    request.on('error', done);
    request.on('response', (response) => {
      if ((response.statusCode ?? 0) >= 300) {
        readBody(response).then((body) => done(new ApiError(response.statusCode ?? 0, body)), done);
        return;
      }
      response.setEncoding('utf8');
      let pending = '';
      const line = (text: string) => {
        if (text.trim() === '') return;
        let event: { type?: unknown; object?: unknown };
        try {
          event = JSON.parse(text) as typeof event;
        } catch (err) {
          done(new Error(`undecodable watch event: ${(err as Error).message}`));
          request.destroy();
          return;
        }
        if (typeof event.type === 'string') onEvent(event.type, event.object);
      };
      response.on('data', (chunk: string) => {
        pending += chunk;
        let nl = pending.indexOf('\n');
        while (nl >= 0 && !finished) {
          line(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          nl = pending.indexOf('\n');
        }
      });
      response.on('end', () => {
        if (!finished) line(pending);
        done(null);
      });
      response.on('error', done);
      response.on('aborted', () => done(new Error('watch connection aborted')));
    });
    request.end();
    return controller;
  }

  private async call<T>(method: string, path: string, query: Query, body?: unknown): Promise<T> {
    if (this.limiter) {
      const waitedMs = await this.limiter.wait();
      this.metrics?.rateLimiterDuration.observe({ verb: method, host: this.host }, waitedMs / 1000);
    }
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = await this.open(method, path, query, undefined, payload);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      request.on('response', resolve);
      request.on('error', reject);
      request.end(payload);
    });
    const answer = await readBody(response);
    if ((response.statusCode ?? 0) >= 300) throw new ApiError(response.statusCode ?? 0, answer);
    return answer as T;
  }

  private async open(method: string, path: string, query: Query, signal?: AbortSignal, payload?: string): Promise<ClientRequest> {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') search.set(k, String(v));
    const qs = search.toString();
    const url = new URL(`${this.access.server}${path}${qs ? `?${qs}` : ''}`);
    const options: RequestOptions = {
      method,
      agent: this.agent,
      headers: {
        Accept: 'application/json',
        'User-Agent': 'kube-proxy',
        ...(payload !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}),
      },
      ...(signal ? { signal } : {}),
    };
    await this.access.authenticate(options);
    return (this.plain ? http : https).request(url, options);
  }
}

/** The whole body: parsed JSON when it is JSON, else the text. */
async function readBody(response: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
