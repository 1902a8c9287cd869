// Per service port series of the userspace proxy. Labels stay low-cardinality: the service
// port, its protocol, the IP family and (for bytes) the direction; never a client or endpoint.

import type { Registry } from 'prom-client';
import { counter, gauge, type IPFamily } from '@kube-proxy-ts/core';
import type { LimitReached } from './limits.js';

type Labels = 'service_port' | 'protocol' | 'ip_family';

export interface ServicePortLabels {
  /** upstream's ServicePortName string, `namespace/name:port` */
  readonly servicePort: string;
  readonly protocol: string;
  readonly ipFamily: IPFamily;
}

/** The series of one listener, resolved once so the hot path does no label hashing. */
export class ListenerMetrics {
  private readonly labels: Record<Labels, string>;
  private readonly active;
  private readonly accepted;
  private readonly connectErrors;
  private readonly refusedByServicePort;
  private readonly refusedByTotal;
  private readonly toEndpoint;
  private readonly toClient;

  constructor(
    private readonly registry: Registry,
    labels: ServicePortLabels,
  ) {
    this.labels = { service_port: labels.servicePort, protocol: labels.protocol, ip_family: labels.ipFamily };
    const m = userspaceMetrics(registry);
    this.active = m.activeConnections.labels(this.labels);
    this.accepted = m.connections.labels(this.labels);
    this.connectErrors = m.connectErrors.labels(this.labels);
    this.refusedByServicePort = m.refused.labels({ ...this.labels, reason: 'service_port_limit' });
    this.refusedByTotal = m.refused.labels({ ...this.labels, reason: 'total_limit' });
    this.toEndpoint = m.bytes.labels({ ...this.labels, direction: 'to_endpoint' });
    this.toClient = m.bytes.labels({ ...this.labels, direction: 'to_client' });
  }

  connectionOpened(): void {
    this.accepted.inc();
    this.active.inc();
  }

  connectionClosed(): void {
    this.active.dec();
  }

  connectError(): void {
    this.connectErrors.inc();
  }

  /** A TCP connection closed at once or a UDP session not opened: a connection limit was reached. */
  refused(reason: LimitReached): void {
    (reason === 'service_port_limit' ? this.refusedByServicePort : this.refusedByTotal).inc();
  }

  bytes(toEndpoint: number, toClient: number): void {
    if (toEndpoint > 0) this.toEndpoint.inc(toEndpoint);
    if (toClient > 0) this.toClient.inc(toClient);
  }

  /** Drops the series of a listener that is gone, so deleted services leave no series behind. */
  remove(): void {
    const m = userspaceMetrics(this.registry);
    m.activeConnections.remove(this.labels);
    m.connections.remove(this.labels);
    m.connectErrors.remove(this.labels);
    m.refused.remove({ ...this.labels, reason: 'service_port_limit' });
    m.refused.remove({ ...this.labels, reason: 'total_limit' });
    m.bytes.remove({ ...this.labels, direction: 'to_endpoint' });
    m.bytes.remove({ ...this.labels, direction: 'to_client' });
  }
}

export function userspaceMetrics(registry: Registry) {
  return {
    activeConnections: gauge<Labels>(registry, {
      name: 'userspace_active_connections',
      help: 'Proxied TCP connections and UDP sessions currently open, per service port.',
      labelNames: ['service_port', 'protocol', 'ip_family'],
    }),
    connections: counter<Labels>(registry, {
      name: 'userspace_connections_total',
      help: 'TCP connections and UDP sessions established to an endpoint, per service port.',
      labelNames: ['service_port', 'protocol', 'ip_family'],
    }),
    connectErrors: counter<Labels>(registry, {
      name: 'userspace_connect_errors_total',
      help: 'Failed attempts to reach an endpoint (errors and timeouts), per service port.',
      labelNames: ['service_port', 'protocol', 'ip_family'],
    }),
    refused: counter<Labels | 'reason'>(registry, {
      name: 'userspace_connections_refused_total',
      help: 'TCP connections closed at once and UDP sessions not opened because a connection limit was reached, per service port and reason (service_port_limit, total_limit).',
      labelNames: ['service_port', 'protocol', 'ip_family', 'reason'],
    }),
    bytes: counter<Labels | 'direction'>(registry, {
      name: 'userspace_bytes_total',
      help: 'Payload bytes relayed, per service port and direction (to_endpoint, to_client).',
      labelNames: ['service_port', 'protocol', 'ip_family', 'direction'],
    }),
  };
}
