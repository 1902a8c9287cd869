// Structural comparison of two `backend.inspect()` pictures, reporting readable differences
// ("$.chains.KUBE-SVC-X: only in partial: ...") rather than a bare "not equal".

export interface CompareOptions {
  /** Names of the two sides in messages. Default ['partial', 'full']. */
  labels?: readonly [string, string];
  /** Stop after this many differences. Default 50. */
  limit?: number;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A JSON-normalised copy with object keys sorted (what survives serialisation is what the
 * contract promises; Maps and Sets are accepted as objects and arrays for convenience).
 */
export function canonicalJson(value: unknown): Json {
  if (value === undefined) return null;
  const plain = JSON.parse(
    JSON.stringify(value, (_key, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v] : v)),
  ) as Json;
  return sortKeys(plain);
}

function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v !== 'object' || v === null) return v;
  const out: { [key: string]: Json } = {};
  for (const key of Object.keys(v).sort()) out[key] = sortKeys(v[key]!);
  return out;
}

function isObject(v: Json): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const show = (v: Json) => {
  const text = JSON.stringify(v);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
};

/**
 * Differences between two inspect() results, empty when they are equal once JSON-normalised.
 * Arrays are compared in order; when they hold the same elements in another order, that is
 * reported as such (a data plane where rule order matters must keep it).
 */
export function compareInspections(a: unknown, b: unknown, options: CompareOptions = {}): string[] {
  const [la, lb] = options.labels ?? ['partial', 'full'];
  const limit = options.limit ?? 50;
  const out: string[] = [];
  const add = (msg: string) => {
    if (out.length < limit) out.push(msg);
  };

  const walk = (x: Json, y: Json, path: string) => {
    if (out.length >= limit) return;
    if (isObject(x) && isObject(y)) {
      for (const key of new Set([...Object.keys(x), ...Object.keys(y)])) {
        const sub = `${path}.${key}`;
        if (!(key in y)) add(`${sub}: only in ${la}: ${show(x[key]!)}`);
        else if (!(key in x)) add(`${sub}: only in ${lb}: ${show(y[key]!)}`);
        else walk(x[key]!, y[key]!, sub);
      }
      return;
    }
    if (Array.isArray(x) && Array.isArray(y)) {
      if (x.length === y.length && x.every((e, i) => JSON.stringify(e) === JSON.stringify(y[i]))) return;
      const count = new Map<string, number>();
      for (const e of y) count.set(JSON.stringify(e), (count.get(JSON.stringify(e)) ?? 0) + 1);
      const onlyX: Json[] = [];
      for (const e of x) {
        const k = JSON.stringify(e);
        const n = count.get(k) ?? 0;
        if (n > 0) count.set(k, n - 1);
        else onlyX.push(e);
      }
      const onlyY = [...count].flatMap(([k, n]) => Array<Json>(n).fill(JSON.parse(k) as Json));
      if (onlyX.length === 0 && onlyY.length === 0) {
        add(`${path}: same elements in another order`);
        return;
      }
      // Same length and one element changed at one index: descend for a precise message.
      if (x.length === y.length && onlyX.length === 1) {
        const i = x.findIndex((e, j) => JSON.stringify(e) !== JSON.stringify(y[j]));
        if (i >= 0 && x.slice(i + 1).every((e, j) => JSON.stringify(e) === JSON.stringify(y[i + 1 + j]))) {
          walk(x[i]!, y[i]!, `${path}[${i}]`);
          return;
        }
      }
      for (const e of onlyX) add(`${path}[]: only in ${la}: ${show(e)}`);
      for (const e of onlyY) add(`${path}[]: only in ${lb}: ${show(e)}`);
      return;
    }
    if (JSON.stringify(x) !== JSON.stringify(y)) add(`${path}: ${la} has ${show(x)}, ${lb} has ${show(y)}`);
  };

  walk(canonicalJson(a), canonicalJson(b), '$');
  return out;
}
