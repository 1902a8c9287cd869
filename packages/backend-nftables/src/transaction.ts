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

import { assertNoControlCharacters, truncateComment } from '@kube-proxy-ts/netfilter';
import type { NftFamily } from './layout.js';
import type { ElementValue } from './service-objects.js';

/** Elements per `add element` statement: big statements parse much faster than one per line. */
const ELEMENTS_PER_STATEMENT = 1000;

export class NftTransaction {
  readonly lines: string[] = [];
  /** Service ports whose chains this transaction writes (for progress reports). */
  services = 0;
  private readonly prefix: string;
  private weight = 0;
  private chainCache = false;

  constructor(
    readonly family: NftFamily,
    readonly table: string,
  ) {
    this.prefix = `${family} ${nftName(table)}`;
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
    if (!spec) this.push(`add chain ${this.prefix} ${nftName(name)}`);
    else if ('comment' in spec) this.push(`add chain ${this.prefix} ${nftName(name)} { comment ${quote(spec.comment)} ; }`);
    else this.push(`add chain ${this.prefix} ${nftName(name)} { type ${nftName(spec.type)} hook ${nftName(spec.hook)} priority ${statement(spec.priority)} ; }`);
    return this;
  }

  flushChain(name: string): this {
    this.push(`flush chain ${this.prefix} ${nftName(name)}`);
    return this;
  }

  deleteChain(name: string): this {
    this.push(`delete chain ${this.prefix} ${nftName(name)}`, true);
    return this;
  }

  /** One `add rule` command (makes nft read every chain first; see addChainRules). */
  addRule(chain: string, rule: string, comment?: string): this {
    return this.push(`add rule ${this.prefix} ${nftName(chain)} ${statement(rule)}${comment ? ` comment ${quote(comment)}` : ''}`, true);
  }

  /** Appends `rules` to an existing chain, in block form: `add chain T C {` one rule a line `}`. */
  addChainRules(chain: string, rules: readonly string[]): this {
    if (rules.length === 0) return this;
    this.lines.push(`add chain ${this.prefix} ${nftName(chain)} {`, ...rules.map((r) => `\t${statement(r)}`), '}');
    this.weight += rules.length;
    return this;
  }

  /** `add` of an existing identical set or map is a no-op, so declarations are idempotent. */
  addContainer(kind: 'set' | 'map', name: string, type: string, options: { comment?: string; flags?: string; timeoutSeconds?: number } = {}): this {
    return this.push(`add ${kind} ${this.prefix} ${nftName(name)} { ${containerSpec({ type, ...options }).join(' ; ')} ; }`);
  }

  flushContainer(kind: 'set' | 'map', name: string): this {
    this.push(`flush ${kind} ${this.prefix} ${nftName(name)}`);
    return this;
  }

  deleteContainer(kind: 'set' | 'map', name: string): this {
    this.push(`delete ${kind} ${this.prefix} ${nftName(name)}`, true);
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
        this.push(`add ${declaredAs.kind} ${this.prefix} ${nftName(container)} { ${spec.join(' ; ')} ; }`);
      } else {
        this.push(`add element ${this.prefix} ${nftName(container)} { ${items.join(', ')} }`, true);
      }
    }
    return this;
  }

  deleteElements(container: string, keys: readonly string[]): this {
    for (let i = 0; i < keys.length; i += ELEMENTS_PER_STATEMENT) {
      const batch = keys.slice(i, i + ELEMENTS_PER_STATEMENT).map(statement);
      this.push(`delete element ${this.prefix} ${nftName(container)} { ${batch.join(', ')} }`, true);
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
  /** With typeOf, the expressions whose types the key and value take (`typeof numgen ... : ip daddr . tcp dport`). */
  readonly type: string;
  readonly typeOf?: boolean;
  readonly flags?: string;
  readonly timeoutSeconds?: number;
  readonly comment?: string;
}

function containerSpec(d: Omit<ContainerDeclaration, 'kind'>): string[] {
  const parts = [`${d.typeOf ? 'typeof' : 'type'} ${statement(d.type)}`];
  if (d.flags) parts.push(`flags ${statement(d.flags)}`);
  if (d.timeoutSeconds !== undefined) parts.push(`timeout ${d.timeoutSeconds}s`);
  if (d.comment) parts.push(`comment ${quote(d.comment)}`);
  return parts;
}

/** `key`, `key : value`, with the comment nft expects between them. */
export function renderElement(key: string, v: ElementValue): string {
  const comment = v.comment ? ` comment ${quote(v.comment)}` : '';
  return v.value ? `${statement(key)}${comment} : ${statement(v.value)}` : `${statement(key)}${comment}`;
}

// What nft reads as a name without quotes (its scanner's `string`); nft allows 255 bytes.
const NFT_NAME = /^[A-Za-z_.][A-Za-z0-9/_.-]{0,254}$/;

/** A table, chain, set or map name: one token, or an error rather than a payload that says more. */
function nftName(name: string): string {
  if (!NFT_NAME.test(name)) throw new Error(`nft name ${JSON.stringify(name)} is not a valid name`);
  return name;
}

// Only these need a closer look: what ends a command, starts a comment, or opens a string.
const NEEDS_SCAN = /[;#"]/;

/**
 * A rule, key or value: one line, with no `;` or `#` outside its quoted strings, so that it can
 * never end the command it is part of and start another.
 */
function statement(text: string): string {
  assertNoControlCharacters(text, 'nft statement');
  if (!NEEDS_SCAN.test(text)) return text;
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && (ch === ';' || ch === '#')) throw new Error(`nft statement ${JSON.stringify(text)} holds a ${ch} outside a string`);
  }
  if (quoted) throw new Error(`nft statement ${JSON.stringify(text)} has an unterminated string`);
  return text;
}

/**
 * A comment as an nft string. nft strings have no escape for '"', so it is dropped; the text is
 * cut to nft's 128-byte limit, which would otherwise fail the whole transaction.
 */
function quote(text: string): string {
  assertNoControlCharacters(text, 'nft comment');
  return `"${truncateComment(text.replaceAll('"', ''), 'nft')}"`;
}
