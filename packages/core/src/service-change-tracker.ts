// Upstream's ServiceChangeTracker: Service events become pending {previous, current} changes
// per Service, and a checkout applies them. `previous` is what the last checkout applied, so an
// update that ends where it started leaves nothing pending.

import type { V1Service } from '@kubernetes/client-node';
import type { Logger } from './contract.js';
import { deepEqual } from './deep-equal.js';
import type { IPFamily, ServicePort, ServicePortKey } from './model.js';
import { namespacedName, serviceToServicePorts } from './service-port.js';
import { RefusedObjects } from './validation.js';

/** The service ports of one Service, by key. */
export type ServicePortMap = ReadonlyMap<ServicePortKey, ServicePort>;

export interface ServiceChange {
  /** `namespace/name` of the Service. */
  readonly service: string;
  readonly previous: ServicePortMap;
  readonly current: ServicePortMap;
}

export interface ServiceChangeTrackerOptions {
  readonly ipFamily: IPFamily;
  readonly proxyName?: string;
  readonly logger?: Logger;
  /** Shared by the trackers of both families, so that a refused Service is reported once. */
  readonly refused?: RefusedObjects;
}

const NONE: ServicePortMap = new Map();

export class ServiceChangeTracker {
  private readonly ipFamily: IPFamily;
  private readonly proxyName: string | undefined;
  private readonly logger: Logger | undefined;
  private readonly refused: RefusedObjects;
  /** Per Service, the ports the last checkout applied. */
  private readonly applied = new Map<string, ServicePortMap>();
  /** Per Service, the ports its latest object gives, when they differ from `applied`. */
  private readonly pending = new Map<string, ServicePortMap>();

  constructor(opts: ServiceChangeTrackerOptions) {
    this.ipFamily = opts.ipFamily;
    this.proxyName = opts.proxyName;
    this.logger = opts.logger;
    this.refused = opts.refused ?? new RefusedObjects();
  }

  /**
   * Records an add (`previous` undefined), update, or delete (`current` undefined). Returns
   * whether the Service now differs from what was last applied.
   */
  update(previous: V1Service | undefined, current: V1Service | undefined): boolean {
    const obj = current ?? previous;
    if (!obj) return false;
    const service = namespacedName(obj.metadata);
    if (!current) this.refused.note(`Service ${service}`, undefined);
    const ports = current ? this.convert(current, service) : NONE;
    const applied = this.applied.get(service) ?? NONE;
    if (deepEqual(ports, applied)) {
      this.pending.delete(service);
      return false;
    }
    this.pending.set(service, ports);
    return true;
  }

  /** How many Services have a change pending. */
  pendingCount(): number {
    return this.pending.size;
  }

  /** The pending changes, without applying them. */
  pendingChanges(): ServiceChange[] {
    return [...this.pending].map(([service, current]) => ({ service, previous: this.applied.get(service) ?? NONE, current }));
  }

  /** Applies every pending change and returns them. */
  checkout(): ServiceChange[] {
    const changes = this.pendingChanges();
    for (const { service, current } of changes) {
      if (current.size === 0) this.applied.delete(service);
      else this.applied.set(service, current);
    }
    this.pending.clear();
    return changes;
  }

  private convert(svc: V1Service, service: string): ServicePortMap {
    const { ports, skipped, otherFamily, invalid, problems } = serviceToServicePorts(svc, this.ipFamily, { proxyName: this.proxyName });
    const news = this.refused.note(`Service ${service}`, invalid);
    if (this.logger) {
      if (invalid && news) this.logger.warn({ service, reason: invalid }, 'Ignoring invalid Service');
      // As upstream, a Service of the other family is passed over silently (10k lines at -v=2 otherwise).
      if (skipped && !otherFamily) this.logger.debug({ service, ipFamily: this.ipFamily, reason: skipped }, 'Skipping Service');
      for (const problem of problems) this.logger.warn({ service, ipFamily: this.ipFamily, problem }, 'Ignoring part of Service');
    }
    return new Map(ports.map((p) => [p.key, p]));
  }
}
