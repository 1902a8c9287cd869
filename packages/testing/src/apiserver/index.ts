/**
 * An in-process API server for tests: real list/watch over HTTP for Services, EndpointSlices,
 * Nodes and (option `served`) ServiceCIDRs, with controls to break it (stall, drop, compact, slow
 * down, fail), a kubeconfig writer, and a recording ProxyEventHandler that checks a source's bookkeeping.
 *
 *   const server = await TestApiServer.start({ bookmarkIntervalMs: 100 });
 *   const kubeconfig = await writeKubeconfig(tmpDir, server.url);
 *   server.apply('services', service('ns1', 'web'));
 *   server.stallWatches(); server.compact(); server.dropWatches('reset');
 */
export { TestApiServer } from './server.js';
export type { TestApiServerOptions, FailureRule, RecordedRequest, Verb } from './server.js';
export { ObjectStore, RESOURCES, ExpiredError, ConflictError, NotFoundError } from './store.js';
export type { ResourceName, ResourceInfo, StoredObject, StoredEvent, EventType } from './store.js';
export { parseLabelSelector, parseFieldSelector, SelectorError } from './selectors.js';
export { writeKubeconfig } from './kubeconfig.js';
export { RecordingHandler } from './recording-handler.js';
export { serviceCIDR } from './service-cidr.js';
export type { RecordedCall, RecordedKind } from './recording-handler.js';
