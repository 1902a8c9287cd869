export { TestApiServer } from './server.js';
export type { TestApiServerOptions, FailureRule, RecordedRequest, Verb } from './server.js';
export { ObjectStore, RESOURCES, ExpiredError, ConflictError, NotFoundError } from './store.js';
export type { ResourceName, ResourceInfo, StoredObject, StoredEvent, EventType } from './store.js';
export { parseLabelSelector, parseFieldSelector, SelectorError } from './selectors.js';
export { writeKubeconfig } from './kubeconfig.js';
export { RecordingHandler } from './recording-handler.js';
export type { RecordedCall, RecordedKind } from './recording-handler.js';
