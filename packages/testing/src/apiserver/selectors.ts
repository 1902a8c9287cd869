// Label and field selectors as the API server parses them (the subset these resources need):
// labels `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`;
// fields metadata.name and metadata.namespace with `=`, `==`, `!=`.

import type { StoredObject } from './store.js';

export class SelectorError extends Error {}

export type Matcher = (obj: StoredObject) => boolean;

/** Splits on commas outside parentheses. */
function requirements(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  out.push(selector.slice(start));
  return out.map((r) => r.trim()).filter((r) => r !== '');
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function checkKey(key: string, selector: string): string {
  if (!LABEL_KEY.test(key)) throw new SelectorError(`unable to parse requirement: invalid label key "${key}" in "${selector}"`);
  return key;
}

function checkValue(value: string, selector: string): string {
  if (!LABEL_VALUE.test(value)) throw new SelectorError(`unable to parse requirement: invalid label value "${value}" in "${selector}"`);
  return value;
}

export function parseLabelSelector(selector: string | undefined): Matcher {
  if (!selector) return () => true;
  const tests: Array<(labels: Record<string, string>) => boolean> = [];
  for (const req of requirements(selector)) {
    let m: RegExpMatchArray | null;
    if ((m = req.match(/^!\s*(\S+)$/))) {
      const key = checkKey(m[1] as string, selector);
      tests.push((l) => !(key in l));
    } else if ((m = req.match(/^(\S+?)\s*(==|!=|=)\s*(\S*)$/))) {
      const key = checkKey(m[1] as string, selector);
      const value = checkValue(m[3] as string, selector);
      const negate = m[2] === '!=';
      tests.push((l) => (negate ? l[key] !== value : l[key] === value));
    } else if ((m = req.match(/^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/))) {
      const key = checkKey(m[1] as string, selector);
      const values = new Set((m[3] as string).split(',').map((v) => checkValue(v.trim(), selector)));
      const negate = m[2] === 'notin';
      tests.push((l) => (negate ? !(key in l) || !values.has(l[key] as string) : key in l && values.has(l[key] as string)));
    } else if ((m = req.match(/^(\S+)$/))) {
      const key = checkKey(m[1] as string, selector);
      tests.push((l) => key in l);
    } else {
      throw new SelectorError(`unable to parse requirement: "${req}" in "${selector}"`);
    }
  }
  return (obj) => {
    const labels = obj.metadata.labels ?? {};
    return tests.every((t) => t(labels));
  };
}

const FIELDS: Record<string, (obj: StoredObject) => string> = {
  'metadata.name': (o) => o.metadata.name,
  'metadata.namespace': (o) => o.metadata.namespace ?? '',
};

export function parseFieldSelector(selector: string | undefined): Matcher {
  if (!selector) return () => true;
  const tests: Matcher[] = [];
  for (const req of requirements(selector)) {
    const m = req.match(/^([^=!]+?)\s*(==|!=|=)\s*(.*)$/);
    if (!m) throw new SelectorError(`invalid field selector: "${req}"`);
    const field = m[1] as string;
    const get = FIELDS[field];
    if (!get) throw new SelectorError(`field label not supported: ${field}`);
    const value = m[3] as string;
    const negate = m[2] === '!=';
    tests.push((o) => (get(o) === value) !== negate);
  }
  return (obj) => tests.every((t) => t(obj));
}
