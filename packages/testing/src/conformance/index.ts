// `@kube-proxy-ts/testing/conformance`: the backend conformance checks without a test runner,
// for places that cannot or should not load vitest (e.g. a test VM). The vitest suite,
// describeBackendConformance(), comes from the package's main entry.

export * from './compare.js';
export * from './universe.js';
export * from './harness.js';
export * from './partial-sync.js';
export * from './checks.js';
