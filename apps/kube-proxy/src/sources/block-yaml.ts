// A fast reader for the block-style YAML that kubectl and most generators write: mappings and
// sequences by indentation, plain and one-line quoted scalars, comments. The `yaml` package reads
// about 0.3-1 MB/s (a 10k-Service manifest takes many seconds); this reads about 15 MB/s (the 12 MB
// of 10k Services and their slices: 0.77 s in a profile of the daemon's start). It gives up
// (NOT_SIMPLE) on anything it does not fully understand (anchors, aliases, tags, block and
// multi-line scalars, flow collections, odd keys, duplicate keys), and the caller then reads that
// document with the `yaml` package, so the result is always what `yaml` (YAML 1.2 core schema)
// would give.

export const NOT_SIMPLE: unique symbol = Symbol('not simple YAML');

interface Line {
  readonly indent: number;
  /** The line without its indentation and trailing spaces. */
  readonly text: string;
}

class NotSimple extends Error {}
const bail = (): never => {
  throw new NotSimple();
};

/**
 * The strings a read returns, each kept once. V8 makes a substring of 13 or more characters a view
 * into the text it came from, so one long label value held for the life of an object would hold the
 * whole file; a string taken from here is a copy of its own, shared by every object that has it.
 */
export class StringTable {
  private readonly strings = new Map<string, string>();

  get(s: string): string {
    // Short strings are copies already; those starting with a digit (addresses) are rarely shared.
    if (s.length < 13 && !(s.charCodeAt(0) > 57)) return s;
    let kept = this.strings.get(s);
    if (kept === undefined) {
      kept = s.length >= 13 ? Buffer.from(s, 'utf8').toString('utf8') : s;
      this.strings.set(kept, kept);
    }
    return kept;
  }
}

/**
 * One document (no `---` or `...` lines in it) as plain JS, or NOT_SIMPLE. An empty document is
 * null. Pass one `strings` table for the documents of one file: they share their strings.
 */
export function readBlockYaml(text: string, strings = new StringTable()): unknown {
  const lines: Line[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.includes('\t')) return NOT_SIMPLE;
    let indent = 0;
    while (line.charCodeAt(indent) === 32) indent++;
    const rest = line.slice(indent).trimEnd();
    if (rest === '' || rest.startsWith('#')) continue;
    lines.push({ indent, text: rest });
  }
  if (lines.length === 0) return null;
  try {
    const reader = new Reader(lines, strings);
    const value = reader.node(0, -1);
    if (reader.at < lines.length) return NOT_SIMPLE;
    return value;
  } catch (err) {
    if (err instanceof NotSimple) return NOT_SIMPLE;
    throw err;
  }
}

class Reader {
  at = 0;
  constructor(
    private readonly lines: readonly Line[],
    private readonly strings: StringTable,
  ) {}

  private scalar(text: string): unknown {
    const v = scalar(text);
    return typeof v === 'string' ? this.strings.get(v) : v;
  }

  /** The block node starting at the current line, which must be indented more than `parent`. */
  node(minIndent: number, parent: number): unknown {
    const line = this.lines[this.at];
    if (!line || line.indent <= parent || line.indent < minIndent) return bail();
    if (isSequenceEntry(line.text)) return this.sequence(line.indent, line.text, line.indent);
    if (splitKey(line.text) !== undefined) return this.mapping(line.indent, line.text, parent);
    // A lone scalar document ("hello"): only at the top.
    if (parent !== -1 || this.lines.length !== 1) return bail();
    this.at++;
    return this.scalar(line.text);
  }

  /** A block sequence whose entries start at column `indent`; the first one's text is `first` (at column `firstColumn`). */
  private sequence(indent: number, first: string, firstColumn: number): unknown[] {
    const out: unknown[] = [];
    let text: string | undefined = first;
    let column = firstColumn;
    for (;;) {
      const after = text === '-' ? '' : text.slice(2);
      const pad = after.length - after.trimStart().length;
      const rest = after.trimStart();
      if (rest === '') {
        // "-" alone: the entry is the block below it (or null).
        this.at++;
        const next = this.lines[this.at];
        out.push(next && next.indent > indent ? this.node(0, indent) : null);
      } else if (isSequenceEntry(rest)) {
        return bail();
      } else if (splitKey(rest) !== undefined) {
        // "- key: value": a mapping whose keys sit at the column after "- " (it reads this line too).
        out.push(this.mapping(column + 2 + pad, rest, indent));
      } else {
        this.at++;
        out.push(this.scalar(stripComment(rest)));
      }
      const next = this.lines[this.at];
      // Another line at this column ends the sequence ("key:\n- a\nother: b"); the caller checks it.
      // Copied to its exact length: an array grown by push keeps room for 16 entries, and a
      // manifest's objects (an endpoint's one address) are held as long as the file is in use.
      if (!next || next.indent < indent || (next.indent === indent && !isSequenceEntry(next.text))) return out.slice();
      if (next.indent > indent) return bail();
      text = next.text;
      column = next.indent;
    }
  }

  /** A block mapping with keys at column `indent`; its first line's text is `first`. `parent` is the enclosing indent. */
  private mapping(indent: number, first: string, parent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    let text = first;
    for (;;) {
      const kv = splitKey(text);
      if (kv === undefined) return bail();
      const [key, value] = kv;
      if (Object.hasOwn(out, key)) return bail();
      this.at++;
      if (value !== '') {
        out[key] = this.scalar(value);
      } else {
        const next = this.lines[this.at];
        if (next && next.indent > indent) out[key] = this.node(0, indent);
        // A sequence may sit at the key's own column ("key:\n- a").
        else if (next && next.indent === indent && isSequenceEntry(next.text)) out[key] = this.sequence(indent, next.text, indent);
        else out[key] = null;
      }
      const next = this.lines[this.at];
      if (!next || next.indent <= parent) return out;
      if (next.indent !== indent) return bail();
      if (isSequenceEntry(next.text)) return next.indent > parent ? bail() : out;
      text = next.text;
    }
  }
}

function isSequenceEntry(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const RESERVED_KEYS = new Set(['true', 'True', 'TRUE', 'false', 'False', 'FALSE', 'null', 'Null', 'NULL', '__proto__', '<<']);

/** `key: value` or `key:` -> [key, value text]; undefined when the line is not a simple mapping entry. */
function splitKey(text: string): [string, string] | undefined {
  let key: string;
  let rest: string;
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = quotedEnd(text);
    if (end === undefined || text[end] !== ':') return undefined;
    if (end + 1 < text.length && text[end + 1] !== ' ') return undefined;
    const k = scalar(text.slice(0, end));
    if (typeof k !== 'string' || k === '__proto__') return bail();
    key = k;
    rest = text.slice(end + 1);
  } else {
    const colon = text.search(/:( |$)/);
    if (colon <= 0) return undefined;
    key = text.slice(0, colon);
    if (!PLAIN_KEY.test(key) || RESERVED_KEYS.has(key)) return bail();
    rest = text.slice(colon + 1);
  }
  const value = stripComment(rest.trim());
  return [key, value];
}

/** Index just after the closing quote of the quoted scalar at the start of `text`. */
function quotedEnd(text: string): number | undefined {
  const q = text[0];
  for (let i = 1; i < text.length; i++) {
    if (q === '"' && text[i] === '\\') {
      i++;
      continue;
    }
    if (text[i] === q) {
      if (q === "'" && text[i + 1] === "'") {
        i++;
        continue;
      }
      return i + 1;
    }
  }
  return undefined;
}

/** The value without a trailing " # comment" (outside quotes). */
function stripComment(value: string): string {
  if (value.startsWith('"') || value.startsWith("'")) {
    const end = quotedEnd(value);
    if (end === undefined) return bail(); // a quoted scalar going on over several lines
    const tail = value.slice(end).trim();
    if (tail !== '' && !tail.startsWith('#')) return bail();
    return value.slice(0, end);
  }
  const hash = value.search(/\s#/);
  return hash < 0 ? value : value.slice(0, hash).trimEnd();
}

const INDICATORS = new Set(['[', ']', '{', '}', '&', '*', '!', '|', '>', '%', '@', '`', '?', ',', '#']);
const DECIMAL = /^[-+]?[0-9]+$/;
// The core schema's other numbers (octal, hex, floats, infinities, NaN): left to the full parser.
const OTHER_NUMBER = /^(?:0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)$/;

/** A scalar on one line, typed as the core schema does. */
function scalar(text: string): unknown {
  const c = text[0] as string;
  if (c === '"') {
    // JSON's escapes are YAML's too; YAML's others (\x, \e, \N, ...) go to the full parser.
    if (/\\[^"\\/bfnrtu]/.test(text) || hasControlCharacter(text)) return bail();
    return JSON.parse(text) as string;
  }
  if (c === "'") return text.slice(1, -1).replaceAll("''", "'");
  if (text === '[]') return [];
  if (text === '{}') return {};
  if (INDICATORS.has(c) || (c === '-' && (text === '-' || text[1] === ' ')) || text.includes(': ') || text.endsWith(':')) return bail();
  switch (text) {
    case '~':
    case 'null':
    case 'Null':
    case 'NULL':
      return null;
    case 'true':
    case 'True':
    case 'TRUE':
      return true;
    case 'false':
    case 'False':
    case 'FALSE':
      return false;
  }
  if (DECIMAL.test(text)) {
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : bail();
  }
  if (OTHER_NUMBER.test(text)) return bail();
  return text;
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) < 32) return true;
  return false;
}
