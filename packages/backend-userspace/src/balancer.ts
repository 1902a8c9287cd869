// Endpoint choice for one listener: round robin over the selected endpoints, with optional
// ClientIP affinity. Pure bookkeeping (no sockets), so tests drive it with a fake clock.

import { AFFINITY_CLIENTS_PER_SERVICE_PORT } from './layout.js';

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
  /** ClientIP pins kept for this service port; the least recently used go first. Default AFFINITY_CLIENTS_PER_SERVICE_PORT. */
  readonly affinityLimit?: number;
  /** Pins of every service port, bounded in total. */
  readonly affinityPool?: AffinityPool;
}

interface AffinityEntry<E> {
  readonly clientIP: string;
  endpoint: E;
  lastUsed: number;
  /** Drops the pin from its balancer (the pool evicted it). */
  readonly evict: () => void;
}

/**
 * The ClientIP pins of every service port, least recently used first, so that their total stays
 * bounded: a flood of client addresses (cheap to forge with UDP) evicts old pins instead of
 * growing memory. An evicted client is balanced afresh on its next connection.
 */
export class AffinityPool {
  private readonly entries = new Set<AffinityEntry<unknown>>();

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`affinity limit must be a positive integer, got ${limit}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Marks `entry` as the most recently used, adding it if new and evicting beyond the limit. */
  use(entry: AffinityEntry<unknown>): void {
    this.entries.delete(entry);
    this.entries.add(entry);
    for (const oldest of this.entries) {
      if (this.entries.size <= this.limit) break;
      this.entries.delete(oldest);
      oldest.evict();
    }
  }

  remove(entry: AffinityEntry<unknown>): void {
    this.entries.delete(entry);
  }
}

export class RoundRobinBalancer<E extends BalancerEndpoint = BalancerEndpoint> {
  private endpoints: readonly E[] = [];
  private nextIndex = 0;
  /** ClientIP affinity timeout in ms; 0 when the service has no affinity. */
  private affinityTimeoutMs = 0;
  /** Pinned clients, least recently used first (a use moves an entry to the end). */
  private readonly affinity = new Map<string, AffinityEntry<E>>();
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly affinityLimit: number;
  private readonly pool: AffinityPool | undefined;

  constructor(options: BalancerOptions) {
    this.now = options.now;
    this.random = options.random ?? Math.random;
    this.affinityLimit = options.affinityLimit ?? AFFINITY_CLIENTS_PER_SERVICE_PORT;
    if (!Number.isSafeInteger(this.affinityLimit) || this.affinityLimit < 1) {
      throw new Error(`affinity limit must be a positive integer, got ${this.affinityLimit}`);
    }
    this.pool = options.affinityPool;
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
      this.clearAffinity();
    }
  }

  /** Forgets every pinned client (the service port is going away, or its affinity changed). */
  clearAffinity(): void {
    for (const clientIP of [...this.affinity.keys()]) this.unpin(clientIP);
  }

  /** Forgets one client's pin: its next connection is balanced afresh (after a failed session). */
  forgetClient(clientIP: string): void {
    this.unpin(clientIP);
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
      else this.unpin(client);
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
        this.pin(entry, now);
        return entry.endpoint;
      }
    }
    const endpoint = this.endpoints[this.nextIndex] as E;
    this.nextIndex = (this.nextIndex + 1) % n;
    if (sticky) this.pinTo(clientIP, endpoint, now);
    return endpoint;
  }

  private pinTo(clientIP: string, endpoint: E, now: number): void {
    const existing = this.affinity.get(clientIP);
    if (existing) {
      existing.endpoint = endpoint;
      this.pin(existing, now);
      return;
    }
    for (const oldest of this.affinity.keys()) {
      if (this.affinity.size < this.affinityLimit) break;
      this.unpin(oldest);
    }
    const entry: AffinityEntry<E> = {
      clientIP,
      endpoint,
      lastUsed: now,
      evict: () => {
        if (this.affinity.get(clientIP) === entry) this.affinity.delete(clientIP);
      },
    };
    this.pin(entry, now);
  }

  /** Records a use: the entry becomes the most recently used here and in the pool. */
  private pin(entry: AffinityEntry<E>, now: number): void {
    entry.lastUsed = now;
    this.affinity.delete(entry.clientIP);
    this.affinity.set(entry.clientIP, entry);
    this.pool?.use(entry);
  }

  private unpin(clientIP: string): void {
    const entry = this.affinity.get(clientIP);
    if (!entry) return;
    this.affinity.delete(clientIP);
    this.pool?.remove(entry);
  }

  /** Forgets clients whose affinity expired; returns how many. */
  pruneAffinity(): number {
    if (this.affinityTimeoutMs === 0) return 0;
    const now = this.now();
    let removed = 0;
    // Least recently used first: the first pin still fresh ends the sweep.
    for (const [client, entry] of this.affinity) {
      if (now - entry.lastUsed < this.affinityTimeoutMs) break;
      this.unpin(client);
      removed++;
    }
    return removed;
  }

  /** Clients currently pinned (for inspection and tests). */
  affinityClients(): number {
    return this.affinity.size;
  }
}
