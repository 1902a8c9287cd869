/**
 * Sources feed a ProxyEventHandler (core) with Services, EndpointSlices and this Node, and with the
 * union of the ServiceCIDRs (onServiceCIDRsChanged; never waited for, a 404 only logged once):
 *
 *   const source = startManifestSource({ path, handler, logger, nodeName });   // --manifests PATH
 *   const source = startKubernetesSource({ cluster, nodeName, handler, logger, metrics, watchdog });
 *   await source.ready;   // all three kinds reported synced (on...Synced called once each)
 *   await source.stop();  // no handler call after it resolves
 *
 * Updates always carry the object the handler received before, and a relist or reload emits only
 * what changed. A manifest source's `ready` rejects when the path cannot be read at start; a
 * Kubernetes source retries (with backoff) until the API server answers, and counts every
 * informer restart in kubeproxy_informer_restarts_total{resource}.
 *
 * loadClusterAccess(path?, master?) reads a kubeconfig file (master overrides its server), or uses
 * the in-cluster service account when neither is given.
 */
export type { Source, ManifestSourceOptions, KubernetesSourceOptions, WatchdogOptions } from './types.js';
export { startManifestSource } from './manifest.js';
export { startKubernetesSource } from './kubernetes.js';
export { loadClusterAccess, type ClusterAccess } from './kubeconfig.js';
export { PROXIED_OBJECTS_LABEL_SELECTOR } from './kinds.js';
export type { NodeEvent, NodeEventRecorder } from './node-events.js';
