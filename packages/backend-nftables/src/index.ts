import type { BackendFactory } from '@kube-proxy-ts/core';
import { NftablesBackend, type NftablesBackendOptions } from './nftables-backend.js';

export * from './nftables-backend.js';
export * from './layout.js';
export * from './service-objects.js';
export * from './setup.js';
export * from './transaction.js';
export * from './existing-objects.js';

/** The nftables mode: one backend per IP family. */
export const nftablesBackendFactory: BackendFactory = (options) => new NftablesBackend(options as NftablesBackendOptions);

export default nftablesBackendFactory;
