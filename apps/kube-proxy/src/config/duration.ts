// Go's time.Duration text form ("30s", "1m0s", "250ms", "1h30m"), which KubeProxyConfiguration
// and upstream's duration flags use. Values are milliseconds (fractions for µs and ns).

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration; throws with the offending text when it is not one. */
export function parseDuration(text: string): number {
  const input = text.trim();
  const fail = (): never => {
    throw new Error(`invalid duration ${JSON.stringify(text)} (expected e.g. "30s", "1m0s", "250ms")`);
  };
  if (input === '') fail();
  let rest = input;
  let sign = 1;
  if (rest[0] === '-' || rest[0] === '+') {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') fail();
  let total = 0;
  const part = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) fail();
    const [all, num, unit] = m as unknown as [string, string, string];
    total += Number(num) * (UNIT_MS[unit] ?? fail());
    rest = rest.slice(all.length);
  }
  return sign * total;
}

/** Formats milliseconds the way Go's Duration.String() does: "30s", "15m0s", "1h0m0s", "250ms". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  let out: string;
  if (rest < 1000) {
    if (rest >= 1) out = `${trim(rest)}ms`;
    else if (rest >= 1e-3) out = `${trim(rest * 1e3)}µs`;
    else out = `${trim(Math.round(rest * 1e6))}ns`;
  } else {
    const h = Math.floor(rest / 3_600_000);
    rest -= h * 3_600_000;
    const m = Math.floor(rest / 60_000);
    rest -= m * 60_000;
    const s = `${trim(rest / 1000)}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}

function trim(n: number): string {
  // At most nanosecond precision, without trailing zeros.
  return String(Number(n.toFixed(9)));
}
