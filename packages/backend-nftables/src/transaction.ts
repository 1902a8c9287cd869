// An nft script for `nft -f -`: one atomic transaction. Commands are kept as lines so that
// callers can count, split and show them (dry-run, tests).

import type { NftFamily } from './layout.js';
import type { ElementValue } from './service-objects.js';

/** Elements per `add element` statement: big statements parse much faster than one per line. */
const ELEMENTS_PER_STATEMENT = 1000;

export class NftTransaction {
  readonly lines: string[] = [];
  private readonly prefix: string;

  constructor(
    readonly family: NftFamily,
    readonly table: string,
  ) {
    this.prefix = `${family} ${table}`;
  }

  get size(): number {
    return this.lines.length;
  }

  addTable(comment: string): this {
    this.lines.push(`add table ${this.prefix} { comment ${quote(comment)} ; }`);
    return this;
  }

  deleteTable(): this {
    this.lines.push(`delete table ${this.prefix}`);
    return this;
  }

  addChain(name: string, spec?: { type: string; hook: string; priority: string } | { comment: string }): this {
    if (!spec) this.lines.push(`add chain ${this.prefix} ${name}`);
    else if ('comment' in spec) this.lines.push(`add chain ${this.prefix} ${name} { comment ${quote(spec.comment)} ; }`);
    else this.lines.push(`add chain ${this.prefix} ${name} { type ${spec.type} hook ${spec.hook} priority ${spec.priority} ; }`);
    return this;
  }

  flushChain(name: string): this {
    this.lines.push(`flush chain ${this.prefix} ${name}`);
    return this;
  }

  deleteChain(name: string): this {
    this.lines.push(`delete chain ${this.prefix} ${name}`);
    return this;
  }

  addRule(chain: string, rule: string, comment?: string): this {
    this.lines.push(`add rule ${this.prefix} ${chain} ${rule}${comment ? ` comment ${quote(comment)}` : ''}`);
    return this;
  }

  /** `add` of an existing identical set or map is a no-op, so declarations are idempotent. */
  addContainer(kind: 'set' | 'map', name: string, type: string, options: { comment?: string; flags?: string; timeoutSeconds?: number } = {}): this {
    const parts = [`type ${type}`];
    if (options.flags) parts.push(`flags ${options.flags}`);
    if (options.timeoutSeconds !== undefined) parts.push(`timeout ${options.timeoutSeconds}s`);
    if (options.comment) parts.push(`comment ${quote(options.comment)}`);
    this.lines.push(`add ${kind} ${this.prefix} ${name} { ${parts.join(' ; ')} ; }`);
    return this;
  }

  flushContainer(kind: 'set' | 'map', name: string): this {
    this.lines.push(`flush ${kind} ${this.prefix} ${name}`);
    return this;
  }

  deleteContainer(kind: 'set' | 'map', name: string): this {
    this.lines.push(`delete ${kind} ${this.prefix} ${name}`);
    return this;
  }

  addElements(container: string, elements: readonly (readonly [string, ElementValue])[]): this {
    for (let i = 0; i < elements.length; i += ELEMENTS_PER_STATEMENT) {
      const items = elements.slice(i, i + ELEMENTS_PER_STATEMENT).map(([key, v]) => renderElement(key, v));
      this.lines.push(`add element ${this.prefix} ${container} { ${items.join(', ')} }`);
    }
    return this;
  }

  deleteElements(container: string, keys: readonly string[]): this {
    for (let i = 0; i < keys.length; i += ELEMENTS_PER_STATEMENT) {
      this.lines.push(`delete element ${this.prefix} ${container} { ${keys.slice(i, i + ELEMENTS_PER_STATEMENT).join(', ')} }`);
    }
    return this;
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

/** `key`, `key : value`, with the comment nft expects between them. */
export function renderElement(key: string, v: ElementValue): string {
  const comment = v.comment ? ` comment ${quote(v.comment)}` : '';
  return v.value ? `${key}${comment} : ${v.value}` : `${key}${comment}`;
}

/** nft strings cannot escape quotes: callers pass only validated Kubernetes names. */
function quote(text: string): string {
  return `"${text.replaceAll('"', '')}"`;
}
