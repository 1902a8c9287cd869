// describeBackendConformance(): the vitest suite every backend runs, ours and third-party ones.
// The checks themselves live in checks.ts, free of vitest, so they also run outside it.

import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from 'vitest';
import type { BackendFactory } from '@kube-proxy-ts/core';
import { backendConformance, type ConformanceOptions } from './checks.js';

/**
 * Registers a `describe` block that checks `factory`'s backends against the contract (see
 * backendConformance()), one test per check. Comparisons go through `backend.inspect()`;
 * without it they are skipped (with a message).
 */
export function describeBackendConformance(name: string, factory: BackendFactory, options?: ConformanceOptions): void;
export function describeBackendConformance(factory: BackendFactory, options?: ConformanceOptions): void;
export function describeBackendConformance(
  nameOrFactory: string | BackendFactory,
  factoryOrOptions?: BackendFactory | ConformanceOptions,
  maybeOptions?: ConformanceOptions,
): void {
  const factory = typeof nameOrFactory === 'function' ? nameOrFactory : (factoryOrOptions as BackendFactory);
  const options: ConformanceOptions =
    (typeof nameOrFactory === 'function' ? (factoryOrOptions as ConformanceOptions | undefined) : maybeOptions) ?? {};
  if (typeof factory !== 'function') throw new TypeError('describeBackendConformance: a BackendFactory is required');

  const conformance = backendConformance(factory, options, typeof nameOrFactory === 'string' ? nameOrFactory : undefined);
  const { name, hasInspect } = conformance;
  const timeout = options.timeoutMs ?? 60_000;

  describe(`${name} backend conformance (${conformance.ipFamily})`, () => {
    if (!hasInspect) {
      console.log(
        `[conformance] ${name}: the backend has no inspect(); skipping the data-plane comparisons ` +
          '(partial vs full sync, restart, cleanup completeness). Implement Backend.inspect() to enable them.',
      );
    }
    const { hooks } = options;
    if (hooks?.beforeAll) beforeAll(hooks.beforeAll, timeout);
    if (hooks?.beforeEach) beforeEach(hooks.beforeEach, timeout);
    afterEach(async () => {
      await conformance.closeAll();
      await hooks?.afterEach?.();
    }, timeout);
    if (hooks?.afterAll) afterAll(hooks.afterAll, timeout);

    for (const check of conformance.checks) {
      it.skipIf(check.needsInspect && !hasInspect)(check.name, () => check.run(), timeout);
    }
  });
}
