// proxyConfig(): core's defaults with a few fields overridden.

import { defaultProxyConfig, type ProxyConfig } from '@kube-proxy-ts/core';

export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Merges `patch` into `base` recursively; arrays and scalars replace. Returns a new object. */
export function deepMerge<T>(base: T, patch: DeepPartial<NoInfer<T>> | undefined): T {
  if (patch === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(patch)) return patch as T;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    out[key] = isPlainObject(out[key]) && isPlainObject(value) ? deepMerge(out[key], value) : value;
  }
  return out as T;
}

/** `defaultProxyConfig()` with `overrides` deep-merged, e.g. proxyConfig({ iptables: { masqueradeAll: true } }). */
export function proxyConfig(overrides?: DeepPartial<ProxyConfig>): ProxyConfig {
  return deepMerge(defaultProxyConfig(), overrides);
}
