// `@kube-proxy-ts/backend-ipvs/test-support`: what the IPVS VM suite shares with this package's
// tests. Not part of the backend's own entry.
export * from './state.js';
