// Health-check node ports of Services with externalTrafficPolicy Local: one HTTP server per
// service on its healthCheckNodePort, answering whether this node has local endpoints, so that
// cloud load balancers only send traffic to nodes that can serve it. Body and headers as upstream's.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@kube-proxy-ts/core';
import { listenOn, type RunningServer } from './listen.js';

/** "namespace/name" of a Service. */
export type NamespacedName = string;

interface Instance {
  readonly port: number;
  servers: RunningServer[];
  endpoints: number;
}

export interface ServiceHealthServerOptions {
  /** Addresses to listen on (unspecified addresses mean all), asked each time a server opens. */
  readonly hosts: readonly string[] | (() => readonly string[]);
  /** The proxy's own health (ignoring the node): serviceProxyHealthy. */
  readonly proxyHealthy: () => boolean;
  readonly logger: Logger;
}

export class ServiceHealthServer {
  private readonly services = new Map<NamespacedName, Instance>();
  private pending: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ServiceHealthServerOptions) {}

  /** Opens servers for new services, closes those of services gone or moved to another port. */
  syncServices(wanted: ReadonlyMap<NamespacedName, number>): Promise<void> {
    this.pending = this.pending.then(() => this.doSyncServices(wanted));
    return this.pending;
  }

  /** Local ready endpoint counts; services absent from the map have none. */
  syncEndpoints(counts: ReadonlyMap<NamespacedName, number>): void {
    for (const [nsn, inst] of this.services) inst.endpoints = counts.get(nsn) ?? 0;
    this.lastCounts = counts;
  }

  private lastCounts: ReadonlyMap<NamespacedName, number> = new Map();

  /** Ports currently served, by service. */
  ports(): Map<NamespacedName, number> {
    return new Map([...this.services].map(([k, v]) => [k, v.port]));
  }

  async close(): Promise<void> {
    await this.pending;
    await Promise.all([...this.services.values()].flatMap((i) => i.servers.map((s) => s.close())));
    this.services.clear();
  }

  private async doSyncServices(wanted: ReadonlyMap<NamespacedName, number>): Promise<void> {
    const log = this.opts.logger;
    for (const [nsn, inst] of [...this.services]) {
      if (wanted.get(nsn) === inst.port) continue;
      log.info({ service: nsn, port: inst.port }, 'Closing healthcheck');
      this.services.delete(nsn);
      await Promise.all(inst.servers.map((s) => s.close()));
    }
    for (const [nsn, port] of wanted) {
      if (this.services.has(nsn)) continue;
      log.info({ service: nsn, port }, 'Opening healthcheck');
      const inst: Instance = { port, servers: [], endpoints: this.lastCounts.get(nsn) ?? 0 };
      try {
        const hosts = typeof this.opts.hosts === 'function' ? this.opts.hosts() : this.opts.hosts;
        for (const host of hosts) inst.servers.push(await listenOn(host, port, this.handler(nsn)));
        this.services.set(nsn, inst);
      } catch (err) {
        // Another process may hold the port; the next sync tries again.
        log.error({ err, service: nsn, port }, 'Failed to start healthcheck');
        await Promise.all(inst.servers.map((s) => s.close()));
      }
    }
  }

  private handler(nsn: NamespacedName) {
    const slash = nsn.indexOf('/');
    const namespace = nsn.slice(0, slash);
    const name = nsn.slice(slash + 1);
    return (_req: IncomingMessage, res: ServerResponse): void => {
      const count = this.services.get(nsn)?.endpoints ?? 0;
      const healthy = this.opts.proxyHealthy();
      res.writeHead(count !== 0 && healthy ? 200 : 503, {
        'Content-Type': 'application/json',
        'X-Content-Type-Options': 'nosniff',
        'X-Load-Balancing-Endpoint-Weight': String(count),
      });
      res.end(serviceHealthBody(namespace, name, count, healthy));
    };
  }
}

/** Upstream's body, byte for byte (tab-indented JSON). */
export function serviceHealthBody(namespace: string, name: string, localEndpoints: number, healthy: boolean): string {
  return [
    '{',
    '\t"service": {',
    `\t\t"namespace": ${JSON.stringify(namespace)},`,
    `\t\t"name": ${JSON.stringify(name)}`,
    '\t},',
    `\t"localEndpoints": ${localEndpoints},`,
    `\t"serviceProxyHealthy": ${healthy}`,
    '}',
  ].join('\n');
}
