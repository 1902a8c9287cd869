// The two output formats of upstream's logging (k8s.io/component-base/logs): klog's text lines and
// the zap-based JSON lines. Pure functions from one record to one line, so tests can check shapes.
//
// Text: `I1202 16:30:43.185123      12 proxier.ts:123] "msg" err="..." key="value" n=3`
//   severity letter, MMDD, local time with microseconds, the process id right-aligned in 7 columns
//   (klog prints the thread id there), the caller's file:line, the quoted message, then key=value
//   pairs: strings quoted as Go's strconv.Quote does, numbers and booleans bare, anything else as
//   JSON. One deviation: a string with line breaks stays on one line (escaped) instead of klog's
//   indented `key=<` block, so that every record is exactly one line.
// JSON: `{"ts":1733156643185.123,"caller":"daemon/family-proxier.ts:127","msg":"...","v":0,...}`:
//   `ts` is float milliseconds since the epoch (as upstream's epochMillisTimeEncoder writes it),
//   info records carry their verbosity `v`, error records carry `err` and no `v`.

export type Severity = 'I' | 'W' | 'E' | 'F';

export interface LogRecord {
  /** Milliseconds since the epoch, with a fractional part down to microseconds. */
  readonly time: number;
  readonly severity: Severity;
  /** klog verbosity of an info record (V(n)); ignored for warnings, errors and fatal records. */
  readonly verbosity: number;
  /** `dir/file:line` of the call site. */
  readonly caller: string;
  readonly msg: string;
  /** The error message, when the record carries one. */
  readonly err?: string;
  /** Structured fields in the order they were given (bindings of child loggers first). */
  readonly fields: ReadonlyArray<readonly [string, unknown]>;
}

export function formatText(r: LogRecord, pid: number): string {
  const d = new Date(Math.floor(r.time));
  const micros = Math.floor((r.time - Math.floor(r.time / 1000) * 1000) * 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  const header =
    `${r.severity}${two(d.getMonth() + 1)}${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(micros).padStart(6, '0')} ` +
    `${String(pid).padStart(7, ' ')} ${baseName(r.caller)}] `;
  let line = header + goQuote(r.msg);
  if (r.err !== undefined) line += ` err=${goQuote(r.err)}`;
  for (const [k, v] of r.fields) {
    if (v === undefined) continue;
    line += ` ${k}=${textValue(v)}`;
  }
  return `${line}\n`;
}

export function formatJson(r: LogRecord): string {
  const out: Record<string, unknown> = { ts: r.time, caller: r.caller, msg: r.msg };
  const isError = r.severity === 'E' || r.severity === 'F';
  if (!isError) out.v = r.verbosity;
  if (r.err !== undefined) out.err = r.err;
  for (const [k, v] of r.fields) {
    if (!(k in out)) out[k] = v;
  }
  return `${safeJson(out)}\n`;
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return goQuote(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === null) return 'null';
  return safeJson(v);
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? 'null';
  } catch (e) {
    return goQuote(`<internal error: ${(e as Error).message}>`);
  }
}

function baseName(caller: string): string {
  const slash = caller.lastIndexOf('/');
  return slash >= 0 ? caller.slice(slash + 1) : caller;
}

const GO_ESCAPES: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '"': '\\"', '\\': '\\\\' };

/** Go's strconv.Quote for the characters a log line meets: control characters escaped, the rest kept. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const esc = GO_ESCAPES[ch];
    if (esc) {
      out += esc;
      continue;
    }
    const c = ch.codePointAt(0) as number;
    if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if ((c >= 0x80 && c < 0xa0) || (c >= 0xd800 && c < 0xe000) || c === 0x2028 || c === 0x2029 || c === 0xfeff) {
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return `${out}"`;
}
