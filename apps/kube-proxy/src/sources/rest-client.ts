// What client-go does around every API request, for the client-node client: the client-side rate
// limit of clientConnection.qps/burst, and the rest_client_* metrics dashboards query.
//
// client-node 1.3 offers no hook that sees both its API calls and its watches: the generated API
// clients take the agent from applySecurityAuthentication(), Watch takes it from
// applyToFetchOptions(), and both send through a node-fetch bundled inside the library. So the
// KubeConfig below hands out agents it knows, and Node's http diagnostics channels report each
// request made through one of them: its method, when its response headers came, and its status.
//
// As client-go: watches are not rate limited (a watch is one long request; its events cost no
// request); a watch is counted in rest_client_requests_total once its response headers arrive,
// and only requests that end (lists, gets) feed rest_client_request_duration_seconds, from the
// request's start to its response's end. A request that fails before any response counts as
// code "<error>".

import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import diagnostics from 'node:diagnostics_channel';
import type { RequestOptions } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '@kube-proxy-ts/core';
import { Counter, Histogram, type Registry } from 'prom-client';

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

/**
 * The client configuration every API call of the proxy goes through: `base`'s clusters, users and
 * contexts, with the rate limit and metrics above. Pass it wherever a KubeConfig is expected.
 */
export class RestClientKubeConfig extends KubeConfig {
  private readonly limiter: TokenBucket | undefined;
  private readonly metrics: RestClientMetrics | undefined;
  private readonly clock: Pick<Clock, 'now' | 'setTimeout'>;

  constructor(base: KubeConfig, options: RestClientOptions = {}) {
    super();
    this.loadFromOptions({ clusters: base.clusters, users: base.users, contexts: base.contexts, currentContext: base.currentContext });
    this.clock = options.clock ?? realTime;
    this.limiter = options.qps !== undefined ? clientRateLimit(options.qps, options.burst ?? 0, this.clock) : undefined;
    this.metrics = options.registry ? restClientMetrics(options.registry) : undefined;
    if (this.metrics) subscribe();
  }

  /** The host label: the API server's host[:port] as written in the kubeconfig, like Go's url.Host. */
  private host(): string {
    const server = this.getCurrentCluster()?.server ?? '';
    try {
      return new URL(server).host;
    } catch {
      return server;
    }
  }

  private track(agent: unknown): void {
    if (!this.metrics || !agent || typeof agent !== 'object') return;
    trackedAgents.set(agent as Agent, { metrics: this.metrics, host: this.host(), now: () => this.clock.now() });
  }

  /** Used by the generated API clients (lists, gets): rate limited. */
  override async applySecurityAuthentication(context: Parameters<KubeConfig['applySecurityAuthentication']>[0]): Promise<void> {
    if (this.limiter) {
      const waitedMs = await this.limiter.wait();
      this.metrics?.rateLimiterDuration.observe({ verb: context.getHttpMethod().toString(), host: this.host() }, waitedMs / 1000);
    }
    await super.applySecurityAuthentication(context);
    this.track(context.getAgent());
  }

  /** Used by Watch: not rate limited, as client-go's watches are not. */
  override async applyToFetchOptions(opts: RequestOptions): ReturnType<KubeConfig['applyToFetchOptions']> {
    const init = await super.applyToFetchOptions(opts);
    this.track(init.agent);
    return init;
  }
}
