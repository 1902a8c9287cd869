// The Kubernetes API source: Services and EndpointSlices of every namespace, this Node, and the
// cluster's ServiceCIDRs, each through a ResilientInformer. Selectors are upstream kube-proxy's, so
// objects handed to another proxy (service.kubernetes.io/service-proxy-name) or headless slices
// never arrive. A cluster without the ServiceCIDR API (before Kubernetes 1.33) is fine: the start
// never waits for ServiceCIDRs, as upstream's does not.

import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  NetworkingV1Api,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Node,
  type V1Service,
  type V1ServiceCIDR,
} from '@kubernetes/client-node';
import { counter, type Logger } from '@kube-proxy-ts/core';
import { parseDuration } from '../config/duration.js';
import { type KindHandler, PROXIED_OBJECTS_LABEL_SELECTOR, type ProxiedKind, endpointSliceHandler, nodeHandler, serviceCIDRHandler, serviceHandler } from './kinds.js';
import { type ListPageRequest, ResilientInformer } from './informer.js';
import { nodeEventRecorder } from './node-events.js';
import { RestClientKubeConfig } from './rest-client.js';
import { ObjectDiff, sameResourceVersion } from './object-diff.js';
import { toTyped } from './typed.js';
import type { KubernetesSourceOptions, Source, WatchdogOptions } from './types.js';

/**
 * The client configuration kube-proxy uses: the kubeconfig file when given (with `master`
 * replacing its server, as upstream's --master does), only `master` when that is all there is,
 * and the in-cluster service account otherwise.
 */
export function loadKubeConfig(path?: string, master?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) {
    kc.loadFromFile(path);
    if (master) {
      const current = kc.getCurrentCluster();
      if (!current) throw new Error(`kubeconfig ${path} has no current cluster`);
      kc.loadFromOptions({
        clusters: kc.clusters.map((c) => (c.name === current.name ? { ...c, server: master, skipTLSVerify: c.skipTLSVerify || isPlainHttp(master) } : c)),
        users: kc.users,
        contexts: kc.contexts,
        currentContext: kc.currentContext,
      });
    }
    return kc;
  }
  if (master) {
    kc.loadFromOptions({
      // client-node refuses http:// unless TLS verification is off; there is no TLS to verify.
      clusters: [{ name: 'master', server: master, skipTLSVerify: isPlainHttp(master) }],
      users: [{ name: 'anonymous' }],
      contexts: [{ name: 'master', cluster: 'master', user: 'anonymous' }],
      currentContext: 'master',
    });
    return kc;
  }
  if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
    throw new Error('no kubeconfig or master given, and not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)');
  }
  kc.loadFromCluster();
  return kc;
}

function isPlainHttp(server: string): boolean {
  return server.startsWith('http:');
}

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
  const kubeConfig = new RestClientKubeConfig(options.kubeConfig, { ...options.clientConnection, ...(options.metrics ? { registry: options.metrics } : {}) });
  const logger = options.logger.child({ component: 'kubernetes-source' });
  const watchdog = { ...watchdogFromEnvironment(process.env, logger), ...options.watchdog };
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  const networking = kubeConfig.makeApiClient(NetworkingV1Api);
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
      listPage: (r: ListPageRequest) => core.listServiceForAllNamespaces(r),
      handler: serviceHandler(handler),
    } satisfies Resource<V1Service>,
    {
      resource: 'endpointslices',
      kind: 'EndpointSlice',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      labelSelector: PROXIED_OBJECTS_LABEL_SELECTOR,
      listPage: (r: ListPageRequest) => discovery.listEndpointSliceForAllNamespaces(r),
      handler: endpointSliceHandler(handler),
    } satisfies Resource<V1EndpointSlice>,
    {
      resource: 'nodes',
      kind: 'Node',
      path: '/api/v1/nodes',
      fieldSelector: `metadata.name=${nodeName}`,
      listPage: (r: ListPageRequest) => core.listNode(r),
      handler: nodeHandler(handler),
    } satisfies Resource<V1Node>,
    {
      resource: 'servicecidrs',
      kind: 'ServiceCIDR',
      path: '/apis/networking.k8s.io/v1/servicecidrs',
      listPage: (r: ListPageRequest) => networking.listServiceCIDR(r),
      handler: serviceCIDRHandler(handler),
      optional: true,
    } satisfies Resource<V1ServiceCIDR>,
  ] as Resource<KubernetesObject>[];

  const informers: ResilientInformer<KubernetesObject>[] = [];
  const synced = resources.map((r) => {
    let resolve!: () => void;
    const done = new Promise<void>((res) => (resolve = res));
    const diff = new ObjectDiff<KubernetesObject>(r.kind, r.handler, sameResourceVersion, logger);
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
          kubeConfig,
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
  logger.info({ nodeName, server: kubeConfig.getCurrentCluster()?.server }, 'watching the API server');

  return {
    ready: Promise.all(synced).then(() => undefined),
    recordNodeEvent: nodeEventRecorder(kubeConfig, nodeName, logger),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}
