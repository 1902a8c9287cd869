// What the backend needs from a TCP or UDP listener of one service port.

import type { Logger } from '@kube-proxy-ts/core';
import type { BalancerEndpoint, RoundRobinBalancer } from './balancer.js';
import type { ListenerBudget } from './limits.js';
import type { ListenerMetrics } from './metrics.js';

export interface ServiceListener {
  readonly protocol: 'TCP' | 'UDP';
  /** True while the socket is open (a listener without endpoints is closed: clients are refused). */
  readonly serving: boolean;
  /** Open TCP connections or UDP sessions. */
  readonly activeConnections: number;
  /**
   * Opens the socket on `port` (0: any) and resolves with the port bound. Rejects with the
   * socket error (e.g. EADDRINUSE) and leaves the listener closed.
   */
  open(port: number): Promise<number>;
  /** Stops accepting; what is established keeps flowing. */
  pause(): void;
  /** These endpoints left the set: UDP sessions to them end (TCP connections carry on). */
  endpointsRemoved(hostPorts: ReadonlySet<string>): void;
  /** Reports bytes relayed since the last call to the metrics. */
  flushMetrics(): void;
  /** Closes the socket and every connection or session. */
  close(): void;
}

export interface ListenerDeps {
  /** The address to listen on ("0.0.0.0", "::" or one address). */
  readonly host: string;
  readonly balancer: RoundRobinBalancer<BalancerEndpoint>;
  readonly metrics: ListenerMetrics;
  readonly logger: Logger;
  /** TCP connections or UDP sessions this listener may hold (its own bound and the shared total). */
  readonly budget: ListenerBudget;
}
