// A small interpreter of the nft scripts this backend writes, applying them to an in-memory
// table with the kernel's rules that matter here: objects must exist before they are used,
// referenced chains and sets cannot be deleted, a map key cannot silently change its value, and
// a failing script changes nothing. Tests and dry runs use it to check transactions without a
// kernel.

import { inlineEndpointsMap, isEndpointsMap } from './endpoint-maps.js';

export interface ModelContainer {
  readonly kind: 'set' | 'map';
  readonly spec: string;
  /** key -> rendered element (`key comment "c" : value`). */
  readonly elements: Map<string, { comment: string | undefined; value: string | undefined }>;
}

export interface ModelTable {
  comment: string;
  chains: Map<string, string[]>;
  containers: Map<string, ModelContainer>;
}

/**
 * The table as the data plane sees it: endpoint-map references written out in the chains
 * (numbered from 0), and the endpoint maps themselves left out, so that two tables that DNAT
 * alike compare equal whichever numbers they used.
 */
export function dataPlaneView(t: ModelTable): { chains: Map<string, string[]>; containers: Map<string, ModelContainer> } {
  const valueOf = (map: string, key: string) => t.containers.get(map)?.elements.get(key)?.value;
  return {
    chains: new Map([...t.chains].map(([n, rules]) => [n, rules.map((r) => inlineEndpointsMap(r, valueOf))])),
    containers: new Map([...t.containers].filter(([name]) => !isEndpointsMap(name))),
  };
}

const VERDICT_TARGET = /\b(?:jump|goto)\s+(\S+)/g;
const SET_REF = /@([^\s,}]+)/g;

const CHAIN_BLOCK = /^add chain (\S+ \S+) (\S+) \{$/;
const ELEMENTS_BLOCK = /^add (set|map) (\S+ \S+) (\S+) \{ (.*) ; elements = \{ (.*) \} ; \}$/;

/**
 * The script as one command a line, with the block forms this backend writes taken apart:
 * `add chain T C {` rules `}` into `add chain` + `add rule`s, and `add map T M { spec ;
 * elements = { ... } ; }` into `add map` + `add element`. Comments and blank lines are dropped.
 */
export function expandScript(script: string): string[] {
  const out: string[] = [];
  const lines = script.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) continue;
    const chain = CHAIN_BLOCK.exec(line);
    if (chain) {
      out.push(`add chain ${chain[1]} ${chain[2]}`);
      for (i++; i < lines.length && lines[i] !== '}'; i++) out.push(`add rule ${chain[1]} ${chain[2]} ${lines[i]!.trim()}`);
      if (i >= lines.length) throw new Error(`unterminated block: ${line}`);
      continue;
    }
    const els = ELEMENTS_BLOCK.exec(line);
    if (els) {
      out.push(`add ${els[1]} ${els[2]} ${els[3]} { ${els[4]} ; }`, `add element ${els[2]} ${els[3]} { ${els[5]} }`);
      continue;
    }
    out.push(line);
  }
  return out;
}

export class NftScriptModel {
  /** family + ' ' + table -> table */
  readonly tables = new Map<string, ModelTable>();

  /** Applies a whole script atomically; throws (changing nothing) on the first bad line. */
  apply(script: string): void {
    const backup = this.clone();
    const lines = expandScript(script);
    try {
      for (const [i, line] of lines.entries()) {
        try {
          this.applyLine(line);
        } catch (e) {
          throw new Error(`line ${i + 1}: ${(e as Error).message}: ${line.slice(0, 200)}`);
        }
      }
    } catch (e) {
      this.tables.clear();
      for (const [k, v] of backup) this.tables.set(k, v);
      throw e;
    }
  }

  table(family: string, name: string): ModelTable | undefined {
    return this.tables.get(`${family} ${name}`);
  }

  private applyLine(line: string): void {
    const m = /^(add|flush|delete) (table|chain|rule|set|map|element) (\S+) (\S+)(?: (.*))?$/.exec(line);
    if (!m) throw new Error('unparsed command');
    const [, verb, obj, family, tableName, rest = ''] = m as unknown as [string, string, string, string, string, string?];
    const key = `${family} ${tableName}`;
    if (obj === 'table') {
      if (verb === 'add') {
        if (!this.tables.has(key)) this.tables.set(key, { comment: /comment "([^"]*)"/.exec(rest)?.[1] ?? '', chains: new Map(), containers: new Map() });
      } else if (verb === 'delete') {
        if (!this.tables.delete(key)) throw new Error('No such file or directory (table)');
      } else {
        throw new Error('unsupported');
      }
      return;
    }
    const t = this.tables.get(key);
    if (!t) throw new Error('No such file or directory (table)');
    const name = rest.split(' ')[0] ?? '';
    const tail = rest.slice(name.length + 1);
    switch (`${verb} ${obj}`) {
      case 'add chain':
        if (!t.chains.has(name)) t.chains.set(name, []);
        return;
      case 'flush chain':
        this.chain(t, name).length = 0;
        return;
      case 'delete chain':
        this.chain(t, name);
        if (this.chainReferenced(t, name)) throw new Error(`Device or resource busy (chain ${name} is referenced)`);
        t.chains.delete(name);
        return;
      case 'add rule': {
        const rules = this.chain(t, name);
        for (const [, target] of tail.matchAll(VERDICT_TARGET)) this.chain(t, target!);
        for (const [, set] of tail.matchAll(SET_REF)) this.container(t, set!);
        rules.push(tail);
        return;
      }
      case 'add set':
      case 'add map': {
        const spec = tail.trim();
        const existing = t.containers.get(name);
        if (existing && (existing.kind !== obj || existing.spec !== spec)) throw new Error(`File exists (${obj} ${name} with another definition)`);
        if (!existing) t.containers.set(name, { kind: obj as 'set' | 'map', spec, elements: new Map() });
        return;
      }
      case 'flush set':
      case 'flush map':
        this.container(t, name).elements.clear();
        return;
      case 'delete set':
      case 'delete map':
        this.container(t, name);
        for (const rules of t.chains.values()) {
          if (rules.some((r) => [...r.matchAll(SET_REF)].some(([, s]) => s === name))) throw new Error(`Device or resource busy (${name} is referenced)`);
        }
        t.containers.delete(name);
        return;
      case 'add element':
      case 'delete element': {
        const c = this.container(t, name);
        const body = /^\{ (.*) \}$/.exec(tail)?.[1];
        if (body === undefined) throw new Error('element list expected');
        for (const item of body.split(', ')) {
          const [left = '', value] = item.split(' : ');
          const cm = /^(.*?)(?: comment "([^"]*)")?$/.exec(left)!;
          const k = cm[1]!;
          if (verb === 'delete') {
            if (!c.elements.delete(k)) throw new Error(`No such file or directory (element ${k})`);
            continue;
          }
          if ((c.kind === 'map') !== (value !== undefined)) throw new Error(`element ${k}: value ${c.kind === 'map' ? 'missing' : 'unexpected'}`);
          for (const [, target] of (value ?? '').matchAll(VERDICT_TARGET)) this.chain(t, target!);
          const old = c.elements.get(k);
          if (old && old.value !== value) throw new Error(`File exists (element ${k} has another value)`);
          c.elements.set(k, { comment: cm[2], value });
        }
        return;
      }
      default:
        throw new Error('unsupported');
    }
  }

  private chain(t: ModelTable, name: string): string[] {
    const c = t.chains.get(name);
    if (!c) throw new Error(`No such file or directory (chain ${name})`);
    return c;
  }

  private container(t: ModelTable, name: string): ModelContainer {
    const c = t.containers.get(name);
    if (!c) throw new Error(`No such file or directory (set ${name})`);
    return c;
  }

  private chainReferenced(t: ModelTable, name: string): boolean {
    const refers = (text: string | undefined) => [...(text ?? '').matchAll(VERDICT_TARGET)].some(([, target]) => target === name);
    for (const [chain, rules] of t.chains) if (chain !== name && rules.some(refers)) return true;
    for (const c of t.containers.values()) for (const e of c.elements.values()) if (refers(e.value)) return true;
    return false;
  }

  private clone(): Map<string, ModelTable> {
    const copy = new Map<string, ModelTable>();
    for (const [k, t] of this.tables) {
      copy.set(k, {
        comment: t.comment,
        chains: new Map([...t.chains].map(([n, r]) => [n, [...r]])),
        containers: new Map([...t.containers].map(([n, c]) => [n, { kind: c.kind, spec: c.spec, elements: new Map(c.elements) }])),
      });
    }
    return copy;
  }
}
