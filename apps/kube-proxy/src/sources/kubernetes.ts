// The Kubernetes API source: Services and EndpointSlices of every namespace, this Node, and the
// cluster's ServiceCIDRs, each through a ResilientInformer. Selectors are upstream kube-proxy's, so
// objects handed to another proxy (service.kubernetes.io/service-proxy-name) or headless slices
// never arrive. A cluster without the ServiceCIDR API (before Kubernetes 1.33) is fine: the start
// never waits for ServiceCIDRs, as upstream's does not.

import type { KubernetesListObject, KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { counter, type Logger } from '@kube-proxy-ts/core';
import { parseDuration } from '../config/duration.js';
import { type KindHandler, PROXIED_OBJECTS_LABEL_SELECTOR, type ProxiedKind, endpointSliceHandler, nodeHandler, serviceCIDRHandler, serviceHandler } from './kinds.js';
import { type ListPageRequest, ResilientInformer } from './informer.js';
import { nodeEventRecorder } from './node-events.js';
import { ApiClient } from './rest-client.js';
import { ObjectDiff, resourceVersionOf } from './object-diff.js';
import { keptOf, toTyped } from './typed.js';
import type { KubernetesSourceOptions, Source, WatchdogOptions } from './types.js';

interface Resource<T extends KubernetesObject> {
  resource: string;
  kind: ProxiedKind;
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  listPage(request: ListPageRequest): Promise<KubernetesListObject<T>>;
  handler: KindHandler<T>;
  /** Not needed to start: `ready` does not wait for it, and a server without the API (or RBAC for it) is tolerated. */
  optional?: boolean;
}

/**
 * The environment variable that sets how long a watch may deliver nothing (not even a bookmark)
 * before it is restarted: a Go duration such as "30s". The 5-minute default suits most clusters;
 * lower it where connections can die silently (a load balancer or NAT that drops them without a
 * reset, an API server frozen with its sockets open) and 5 minutes of stale rules is too long.
 */
export const WATCH_IDLE_TIMEOUT_ENV = 'KUBE_PROXY_WATCH_IDLE_TIMEOUT';

/** The watchdog settings the environment asks for; a value that is not a positive duration is logged and ignored. */
export function watchdogFromEnvironment(env: NodeJS.ProcessEnv, logger: Logger): WatchdogOptions {
  const text = env[WATCH_IDLE_TIMEOUT_ENV];
  if (text === undefined || text === '') return {};
  let idleTimeoutMs: number;
  try {
    idleTimeoutMs = parseDuration(text);
  } catch (err) {
    logger.warn({ env: WATCH_IDLE_TIMEOUT_ENV, err: (err as Error).message }, 'ignoring the watch idle timeout');
    return {};
  }
  // Below 1 s the server-side watch timeout (whole seconds, under the idle timeout) cannot be set.
  if (!(idleTimeoutMs >= 1000)) {
    logger.warn({ env: WATCH_IDLE_TIMEOUT_ENV, value: text }, 'ignoring the watch idle timeout: it must be at least 1s');
    return {};
  }
  logger.info({ env: WATCH_IDLE_TIMEOUT_ENV, idleTimeoutMs }, 'watch idle timeout set from the environment');
  return { idleTimeoutMs };
}

/** The longest wait before an optional API that was not served or not allowed is asked for again. */
const UNAVAILABLE_RETRY_MS = 10 * 60_000;

/**
 * Starts the informers. `ready` resolves once Services, EndpointSlices and the Node have each
 * delivered a first complete list; until then a failing API server only causes retries (start-up
 * waits, as upstream does).
 */
export function startKubernetesSource(options: KubernetesSourceOptions): Source {
  const { nodeName, handler } = options;
  // Every request below goes through it: clientConnection.qps/burst and the rest_client_* series.
  const client = new ApiClient(options.cluster, { ...options.clientConnection, ...(options.metrics ? { registry: options.metrics } : {}) });
  const logger = options.logger.child({ component: 'kubernetes-source' });
  const watchdog = { ...watchdogFromEnvironment(process.env, logger), ...options.watchdog };
  const list =
    <T extends KubernetesObject>(path: string) =>
    (r: ListPageRequest) =>
      client.get<KubernetesListObject<T>>(path, { ...r });
  const restarts = options.metrics
    ? counter(options.metrics, {
        name: 'informer_restarts_total',
        help: 'Restarts of a Kubernetes informer after a watch error, a stall or a failed list, by resource.',
        labelNames: ['resource'] as const,
      })
    : undefined;

  const resources = [
    {
      resource: 'services',
      kind: 'Service',
      path: '/api/v1/services',
      labelSelector: PROXIED_OBJECTS_LABEL_SELECTOR,
      listPage: list<V1Service>('/api/v1/services'),
      handler: serviceHandler(handler),
    } satisfies Resource<V1Service>,
    {
      resource: 'endpointslices',
      kind: 'EndpointSlice',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      labelSelector: PROXIED_OBJECTS_LABEL_SELECTOR,
      listPage: list<V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices'),
      handler: endpointSliceHandler(handler),
    } satisfies Resource<V1EndpointSlice>,
    {
      resource: 'nodes',
      kind: 'Node',
      path: '/api/v1/nodes',
      fieldSelector: `metadata.name=${nodeName}`,
      listPage: list<V1Node>('/api/v1/nodes'),
      handler: nodeHandler(handler),
    } satisfies Resource<V1Node>,
    {
      resource: 'servicecidrs',
      kind: 'ServiceCIDR',
      path: '/apis/networking.k8s.io/v1/servicecidrs',
      listPage: list<V1ServiceCIDR>('/apis/networking.k8s.io/v1/servicecidrs'),
      handler: serviceCIDRHandler(handler),
      optional: true,
    } satisfies Resource<V1ServiceCIDR>,
  ] as Resource<KubernetesObject>[];

  const informers: ResilientInformer<KubernetesObject>[] = [];
  const synced = resources.map((r) => {
    let resolve!: () => void;
    const done = new Promise<void>((res) => (resolve = res));
    const diff = new ObjectDiff<KubernetesObject>(r.kind, r.handler, { version: resourceVersionOf, keep: keptOf(r.kind) }, logger);
    informers.push(
      new ResilientInformer<KubernetesObject>(
        {
          resource: r.resource,
          path: r.path,
          ...(r.labelSelector !== undefined ? { labelSelector: r.labelSelector } : {}),
          ...(r.fieldSelector !== undefined ? { fieldSelector: r.fieldSelector } : {}),
          listPage: r.listPage,
          normalize: (raw) => toTyped(r.kind, raw),
          diff,
          ...(options.listPageSize ? { pageSize: options.listPageSize } : {}),
          ...(r.optional ? { unavailableRetryMs: UNAVAILABLE_RETRY_MS } : {}),
        },
        {
          client,
          logger,
          ...(restarts ? { restarts } : {}),
          watchdog,
          ...(options.resyncPeriodMs !== undefined ? { resyncPeriodMs: options.resyncPeriodMs } : {}),
          onSynced: () => {
            diff.synced();
            logger.info({ resource: r.resource, count: diff.size }, 'informer synced');
            resolve();
          },
        },
      ),
    );
    return r.optional ? undefined : done;
  });

  let stopped = false;
  for (const informer of informers) informer.start();
  logger.info({ nodeName, server: options.cluster.server, credentials: options.cluster.credentials }, 'watching the API server');

  return {
    ready: Promise.all(synced).then(() => undefined),
    recordNodeEvent: nodeEventRecorder(client, nodeName, logger),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}
