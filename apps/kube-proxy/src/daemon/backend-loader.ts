// From a proxy mode to a BackendFactory: the built-in modes map to this repository's backend
// packages; any other mode is the name of an installed package whose default export is a factory.

import type { BackendFactory } from '@kube-proxy-ts/core';

export const BUILTIN_BACKENDS: Readonly<Record<string, string>> = {
  iptables: '@kube-proxy-ts/backend-iptables',
  ipvs: '@kube-proxy-ts/backend-ipvs',
  nftables: '@kube-proxy-ts/backend-nftables',
  userspace: '@kube-proxy-ts/backend-userspace',
};

export class BackendLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendLoadError';
  }
}

export type ModuleImporter = (specifier: string) => Promise<unknown>;

const defaultImporter: ModuleImporter = (specifier) => import(specifier);

export function packageForMode(mode: string): string {
  return BUILTIN_BACKENDS[mode] ?? mode;
}

/** Loads the factory of `mode`; throws BackendLoadError saying what is wrong. */
export async function loadBackendFactory(mode: string, importer: ModuleImporter = defaultImporter): Promise<BackendFactory> {
  const pkg = packageForMode(mode);
  let mod: unknown;
  try {
    mod = await importer(pkg);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const missing = e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(pkg);
    throw new BackendLoadError(
      missing
        ? `proxy mode ${JSON.stringify(mode)}: package ${pkg} is not installed (a mode is iptables, ipvs, nftables, userspace, or the name of an installed backend package)`
        : `proxy mode ${JSON.stringify(mode)}: cannot load package ${pkg}: ${e.message}`,
    );
  }
  const factory = factoryOf(mod);
  if (!factory) {
    throw new BackendLoadError(`proxy mode ${JSON.stringify(mode)}: package ${pkg} has no default export that is a BackendFactory function`);
  }
  return factory;
}

function factoryOf(mod: unknown): BackendFactory | undefined {
  if (!mod || typeof mod !== 'object') return undefined;
  const def = (mod as { default?: unknown }).default;
  if (typeof def === 'function') return def as BackendFactory;
  // A CommonJS package seen through ESM interop: module.exports.default.
  const nested = def && typeof def === 'object' ? (def as { default?: unknown }).default : undefined;
  return typeof nested === 'function' ? (nested as BackendFactory) : undefined;
}
