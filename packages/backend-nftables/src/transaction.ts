// An nft script for `nft -f -`: one atomic transaction. Commands are kept as lines so that
// callers can split and show them (dry-run, tests); `size` counts commands, rules and element
// statements, which is what bounds a transaction's cost.
//
// Why chain rules and elements are written in block form: nft 1.0.6 reads every chain of every
// table into its cache before it runs a script holding `add rule`, `add element` or any
// `delete`, and the kernel's chain dump costs O(chains^2) (each dump batch re-walks the chain
// list from its start): at 10k services x 10 endpoints (110k chains) that is seconds for each
// transaction. `add chain X { rules }` and `add map M { ... ; elements = { ... } ; }` mean the
// same (they add rules and elements to existing objects) but need only the table cache.

import type { NftFamily } from './layout.js';
import type { ElementValue } from './service-objects.js';

/** Elements per `add element` statement: big statements parse much faster than one per line. */
const ELEMENTS_PER_STATEMENT = 1000;

export class NftTransaction {
  readonly lines: string[] = [];
  private readonly prefix: string;
  private weight = 0;
  private chainCache = false;

  constructor(
    readonly family: NftFamily,
    readonly table: string,
  ) {
    this.prefix = `${family} ${table}`;
  }

  /** Commands, rules and element statements in this transaction. */
  get size(): number {
    return this.weight;
  }

  /** True when nft has to read every chain of the family first to run it (see above). */
  get needsChainCache(): boolean {
    return this.chainCache;
  }

  /** Appends another transaction's commands. */
  append(other: NftTransaction): this {
    this.lines.push(...other.lines);
    this.weight += other.weight;
    this.chainCache ||= other.chainCache;
    return this;
  }

  private push(line: string, chainCache = false): this {
    this.lines.push(line);
    this.weight++;
    if (chainCache) this.chainCache = true;
    return this;
  }

  addTable(comment: string): this {
    this.push(`add table ${this.prefix} { comment ${quote(comment)} ; }`);
    return this;
  }

  deleteTable(): this {
    this.push(`delete table ${this.prefix}`, true);
    return this;
  }

  addChain(name: string, spec?: { type: string; hook: string; priority: string } | { comment: string }): this {
    if (!spec) this.push(`add chain ${this.prefix} ${name}`);
    else if ('comment' in spec) this.push(`add chain ${this.prefix} ${name} { comment ${quote(spec.comment)} ; }`);
    else this.push(`add chain ${this.prefix} ${name} { type ${spec.type} hook ${spec.hook} priority ${spec.priority} ; }`);
    return this;
  }

  flushChain(name: string): this {
    this.push(`flush chain ${this.prefix} ${name}`);
    return this;
  }

  deleteChain(name: string): this {
    this.push(`delete chain ${this.prefix} ${name}`, true);
    return this;
  }

  /** One `add rule` command (makes nft read every chain first; see addChainRules). */
  addRule(chain: string, rule: string, comment?: string): this {
    return this.push(`add rule ${this.prefix} ${chain} ${rule}${comment ? ` comment ${quote(comment)}` : ''}`, true);
  }

  /** Appends `rules` to an existing chain, in block form: `add chain T C {` one rule a line `}`. */
  addChainRules(chain: string, rules: readonly string[]): this {
    if (rules.length === 0) return this;
    this.lines.push(`add chain ${this.prefix} ${chain} {`, ...rules.map((r) => `\t${r}`), '}');
    this.weight += rules.length;
    return this;
  }

  /** `add` of an existing identical set or map is a no-op, so declarations are idempotent. */
  addContainer(kind: 'set' | 'map', name: string, type: string, options: { comment?: string; flags?: string; timeoutSeconds?: number } = {}): this {
    return this.push(`add ${kind} ${this.prefix} ${name} { ${containerSpec({ type, ...options }).join(' ; ')} ; }`);
  }

  flushContainer(kind: 'set' | 'map', name: string): this {
    this.push(`flush ${kind} ${this.prefix} ${name}`);
    return this;
  }

  deleteContainer(kind: 'set' | 'map', name: string): this {
    this.push(`delete ${kind} ${this.prefix} ${name}`, true);
    return this;
  }

  /**
   * Adds elements. Given the container's declaration (exactly as declared: an identical `add`
   * changes nothing else), they are written in block form, which needs no chain cache.
   */
  addElements(container: string, elements: readonly (readonly [string, ElementValue])[], declaredAs?: ContainerDeclaration): this {
    for (let i = 0; i < elements.length; i += ELEMENTS_PER_STATEMENT) {
      const items = elements.slice(i, i + ELEMENTS_PER_STATEMENT).map(([key, v]) => renderElement(key, v));
      if (declaredAs) {
        const spec = [...containerSpec(declaredAs), `elements = { ${items.join(', ')} }`];
        this.push(`add ${declaredAs.kind} ${this.prefix} ${container} { ${spec.join(' ; ')} ; }`);
      } else {
        this.push(`add element ${this.prefix} ${container} { ${items.join(', ')} }`, true);
      }
    }
    return this;
  }

  deleteElements(container: string, keys: readonly string[]): this {
    for (let i = 0; i < keys.length; i += ELEMENTS_PER_STATEMENT) {
      this.push(`delete element ${this.prefix} ${container} { ${keys.slice(i, i + ELEMENTS_PER_STATEMENT).join(', ')} }`, true);
    }
    return this;
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

/** A set or map as declared with addContainer. */
export interface ContainerDeclaration {
  readonly kind: 'set' | 'map';
  readonly type: string;
  readonly flags?: string;
  readonly timeoutSeconds?: number;
  readonly comment?: string;
}

function containerSpec(d: Omit<ContainerDeclaration, 'kind'>): string[] {
  const parts = [`type ${d.type}`];
  if (d.flags) parts.push(`flags ${d.flags}`);
  if (d.timeoutSeconds !== undefined) parts.push(`timeout ${d.timeoutSeconds}s`);
  if (d.comment) parts.push(`comment ${quote(d.comment)}`);
  return parts;
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
