// Backends of both IP families share one registry, so metrics are looked up before they are
// created: the second family reuses the first one's series (told apart by the ip_family label).

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Upstream's metrics subsystem: every series is `kubeproxy_<name>`. */
export const METRICS_SUBSYSTEM = 'kubeproxy';

type Config<L extends string> = { name: string; help: string; labelNames?: readonly L[] };

function getOrCreate<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

export function counter<L extends string>(registry: Registry, cfg: Config<L>): Counter<L> {
  const name = `${METRICS_SUBSYSTEM}_${cfg.name}`;
  return getOrCreate(registry, name, () => new Counter<L>({ name, help: cfg.help, labelNames: cfg.labelNames ?? [], registers: [registry] }));
}

export function gauge<L extends string>(registry: Registry, cfg: Config<L>): Gauge<L> {
  const name = `${METRICS_SUBSYSTEM}_${cfg.name}`;
  return getOrCreate(registry, name, () => new Gauge<L>({ name, help: cfg.help, labelNames: cfg.labelNames ?? [], registers: [registry] }));
}

export function histogram<L extends string>(registry: Registry, cfg: Config<L> & { buckets: number[] }): Histogram<L> {
  const name = `${METRICS_SUBSYSTEM}_${cfg.name}`;
  return getOrCreate(registry, name, () => new Histogram<L>({ name, help: cfg.help, labelNames: cfg.labelNames ?? [], buckets: cfg.buckets, registers: [registry] }));
}

/** prom-client's exponentialBuckets(start, factor, count), as upstream's metrics use. */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}
