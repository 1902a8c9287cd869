// A throw-away node made of network namespaces on the real kernel: the demo runs kube-proxy in
// one, and the end-to-end suites run every scenario in one.
export * from './plan.js';
export * from './sandbox.js';
export * from './servers.js';
