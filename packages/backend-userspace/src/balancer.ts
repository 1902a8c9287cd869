// Endpoint choice for one listener: round robin over the selected endpoints, with optional
// ClientIP affinity. Pure bookkeeping (no sockets), so tests drive it with a fake clock.

/** What the balancer needs to know of an endpoint. */
export interface BalancerEndpoint {
  /** `ip:port` or `[ip]:port`: the identity of the endpoint. */
  readonly hostPort: string;
  readonly ip: string;
  readonly port: number;
}

export interface BalancerOptions {
  /** Milliseconds since some epoch; only differences matter. */
  readonly now: () => number;
  /**
   * Where round robin starts after the endpoint set changes, as upstream shuffled its list so
   * that every node does not hammer the first endpoint. Returns [0, 1). Default Math.random.
   */
  readonly random?: () => number;
}

interface AffinityEntry<E> {
  endpoint: E;
  lastUsed: number;
}

export class RoundRobinBalancer<E extends BalancerEndpoint = BalancerEndpoint> {
  private endpoints: readonly E[] = [];
  private nextIndex = 0;
  /** ClientIP affinity timeout in ms; 0 when the service has no affinity. */
  private affinityTimeoutMs = 0;
  private readonly affinity = new Map<string, AffinityEntry<E>>();
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(options: BalancerOptions) {
    this.now = options.now;
    this.random = options.random ?? Math.random;
  }

  /** Whether ClientIP affinity is on (callers skip looking up the client address when not). */
  get sticky(): boolean {
    return this.affinityTimeoutMs > 0;
  }

  get size(): number {
    return this.endpoints.length;
  }

  /** The endpoints in round-robin order. */
  list(): readonly E[] {
    return this.endpoints;
  }

  /** ClientIP affinity: 0 (or less) turns it off and forgets every client. */
  setAffinityTimeout(ms: number): void {
    const timeout = ms > 0 ? ms : 0;
    if (timeout !== this.affinityTimeoutMs) {
      this.affinityTimeoutMs = timeout;
      this.affinity.clear();
    }
  }

  /**
   * Replaces the endpoint set. Clients keep their affinity to endpoints that stay; an unchanged
   * set keeps the round-robin position.
   */
  setEndpoints(endpoints: readonly E[]): void {
    const same =
      endpoints.length === this.endpoints.length &&
      endpoints.every((ep, i) => ep.hostPort === this.endpoints[i]?.hostPort);
    const wasEmpty = this.endpoints.length === 0;
    this.endpoints = [...endpoints];
    if (same) return;
    const byHostPort = new Map(this.endpoints.map((ep) => [ep.hostPort, ep]));
    for (const [client, entry] of this.affinity) {
      const current = byHostPort.get(entry.endpoint.hostPort);
      if (current) entry.endpoint = current;
      else this.affinity.delete(client);
    }
    const n = this.endpoints.length;
    if (n === 0) this.nextIndex = 0;
    else if (wasEmpty) this.nextIndex = Math.min(n - 1, Math.floor(this.random() * n));
    else this.nextIndex %= n;
  }

  /**
   * The endpoint for a new connection from `clientIP`, or undefined when there is none.
   * `resetAffinity` is set after a failed connect: skip the remembered endpoint and move on.
   */
  pick(clientIP: string | undefined, resetAffinity = false): E | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    const sticky = this.affinityTimeoutMs > 0 && clientIP !== undefined;
    const now = sticky ? this.now() : 0;
    if (sticky && !resetAffinity) {
      const entry = this.affinity.get(clientIP);
      if (entry && now - entry.lastUsed < this.affinityTimeoutMs) {
        entry.lastUsed = now;
        return entry.endpoint;
      }
    }
    const endpoint = this.endpoints[this.nextIndex] as E;
    this.nextIndex = (this.nextIndex + 1) % n;
    if (sticky) this.affinity.set(clientIP, { endpoint, lastUsed: now });
    return endpoint;
  }

  /** Forgets clients whose affinity expired; returns how many. */
  pruneAffinity(): number {
    if (this.affinityTimeoutMs === 0) return 0;
    const now = this.now();
    let removed = 0;
    for (const [client, entry] of this.affinity) {
      if (now - entry.lastUsed >= this.affinityTimeoutMs) {
        this.affinity.delete(client);
        removed++;
      }
    }
    return removed;
  }

  /** Clients currently pinned (for inspection and tests). */
  affinityClients(): number {
    return this.affinity.size;
  }
}
