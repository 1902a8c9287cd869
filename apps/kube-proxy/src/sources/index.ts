/**
 * Sources feed a ProxyEventHandler with Services, EndpointSlices and this Node:
 *
 *   const source = startManifestSource({ path, handler, logger });           // --manifests PATH
 *   const source = startKubernetesSource({ kubeConfig, nodeName, handler, logger, metrics });
 *   await source.ready;   // all three kinds synced
 *   await source.stop();
 *
 * loadKubeConfig(path?, master?) reads a kubeconfig file, or the in-cluster service account.
 */
export type { Source, ManifestSourceOptions, KubernetesSourceOptions, WatchdogOptions } from './types.js';
export { startManifestSource } from './manifest.js';
export { startKubernetesSource, loadKubeConfig } from './kubernetes.js';
