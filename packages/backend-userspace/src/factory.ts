// The BackendFactory the daemon loads for --proxy-mode=userspace.

import type { BackendFactory } from '@kube-proxy-ts/core';
import { UserspaceBackend } from './backend.js';

export const createUserspaceBackend: BackendFactory = (options) => new UserspaceBackend(options);
