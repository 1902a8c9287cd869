// `kube-proxy inspect [NAMESPACE/NAME[:PORT]]` and `kube-proxy explain --from IP --to IP:PORT/PROTO`:
// ask the daemon running on this node, on its metrics address, and print its answer.

import { request } from 'node:http';
import { isIP } from 'node:net';
import type { Explanation } from '@kube-proxy-ts/core';
import { splitHostPort } from '../config/net.js';
import { EXPLAIN_PATH, INSPECT_PATH, parseDestination } from '../server/debug-handler.js';
import { formatExplain, formatInspect } from './format.js';
import type { InspectReport } from './report.js';

export const SUBCOMMANDS = ['inspect', 'explain'] as const;

const DEFAULT_METRICS_ADDRESS = '127.0.0.1:10249';
const DEFAULT_TIMEOUT_MS = 60_000;

export interface SubcommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

class UsageError extends Error {}

const USAGE = `Usage:
  kube-proxy inspect [NAMESPACE/NAME[:PORT]] [-o table|json] [--metrics-bind-address IP:PORT]
      Each service port (or those of one Service): its addresses, the endpoints this node uses and
      why others are left out, what the kernel holds for it, and where that differs from what the
      proxy would program now (DRIFT).
  kube-proxy explain --from IP --to IP:PORT[/TCP|UDP|SCTP] [-o table|json] [--metrics-bind-address IP:PORT]
      The way a new connection goes through the rules the kernel holds: chains or maps passed,
      masquerade, endpoints with their share of connections, or why it is dropped or rejected.

Both ask the kube-proxy running on this node at its metrics address (default ${DEFAULT_METRICS_ADDRESS}).
`;

interface Parsed {
  readonly command: (typeof SUBCOMMANDS)[number];
  readonly output: 'table' | 'json';
  readonly address: string;
  readonly timeoutMs: number;
  readonly service?: string;
  readonly from?: string;
  readonly to?: string;
  readonly help: boolean;
}

function parseArgs(argv: readonly string[]): Parsed {
  const [command, ...rest] = argv;
  if (command !== 'inspect' && command !== 'explain') throw new UsageError(`unknown subcommand ${command ?? ''}`);
  const values = new Map<string, string>();
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '-h' || a === '--help') {
      help = true;
      continue;
    }
    if (!a.startsWith('-')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = (eq >= 0 ? a.slice(0, eq) : a).replace(/^--?/, '');
    const known = ['o', 'output', 'metrics-bind-address', 'from', 'to', 'timeout'];
    if (!known.includes(name)) throw new UsageError(`unknown flag ${a}`);
    const value = eq >= 0 ? a.slice(eq + 1) : rest[++i];
    if (value === undefined) throw new UsageError(`flag ${a} needs a value`);
    values.set(name === 'o' ? 'output' : name, value);
  }
  const output = values.get('output') ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o ${output}: want table or json`);
  const timeout = values.get('timeout');
  const timeoutMs = timeout === undefined ? DEFAULT_TIMEOUT_MS : parseSeconds(timeout);
  if (command === 'inspect') {
    if (values.has('from') || values.has('to')) throw new UsageError('--from and --to are flags of explain');
    if (positional.length > 1) throw new UsageError('inspect takes at most one NAMESPACE/NAME');
  } else if (positional.length > 0) throw new UsageError(`explain takes no argument (got ${positional[0]}); use --from and --to`);
  return {
    command,
    output,
    address: values.get('metrics-bind-address') ?? DEFAULT_METRICS_ADDRESS,
    timeoutMs,
    help,
    ...(positional[0] !== undefined ? { service: positional[0] } : {}),
    ...(values.has('from') ? { from: values.get('from')! } : {}),
    ...(values.has('to') ? { to: values.get('to')! } : {}),
  };
}

function parseSeconds(text: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(text);
  if (!m) throw new UsageError(`--timeout ${text}: want a duration such as 30s`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/**
 * Where to reach the daemon: its metrics address, with an unspecified host (the daemon listening on
 * every address) reached over loopback.
 */
export function daemonURL(address: string): URL {
  const hp = splitHostPort(address) ?? (isIP(address) ? { host: address, port: '10249' } : undefined);
  if (!hp || isIP(hp.host) === 0) throw new UsageError(`--metrics-bind-address ${address}: want IP:PORT, e.g. ${DEFAULT_METRICS_ADDRESS}`);
  const host = hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host;
  return new URL(`http://${host.includes(':') ? `[${host}]` : host}:${hp.port}`);
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

function get(url: URL, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000}s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Runs `kube-proxy inspect|explain ...`; resolves with the exit code. */
export async function runSubcommand(argv: readonly string[], io: SubcommandIO): Promise<number> {
  let parsed: Parsed;
  let url: URL;
  try {
    parsed = parseArgs(argv);
    if (parsed.help) {
      io.stdout(USAGE);
      return 0;
    }
    url = daemonURL(parsed.address);
    if (parsed.command === 'inspect') {
      url.pathname = INSPECT_PATH;
      if (parsed.service) url.searchParams.set('service', parsed.service);
    } else {
      if (!parsed.from || !parsed.to) throw new UsageError('explain needs --from IP and --to IP:PORT/PROTO');
      if (isIP(parsed.from) === 0) throw new UsageError(`--from ${parsed.from}: want an IP address`);
      const d = parseDestination(parsed.to);
      url.pathname = EXPLAIN_PATH;
      url.searchParams.set('from', parsed.from);
      url.searchParams.set('to', `${d.dst.includes(':') ? `[${d.dst}]` : d.dst}:${d.port}/${d.protocol}`);
    }
  } catch (err) {
    io.stderr(`Error: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }

  let answer: Answer;
  try {
    answer = await get(url, parsed.timeoutMs);
  } catch (err) {
    io.stderr(`Error: cannot reach kube-proxy at ${url.origin} (${(err as Error).message}). Is it running on this node, with this --metrics-bind-address?\n`);
    return 1;
  }
  if (answer.status === 404) {
    io.stderr(`Error: ${url.origin} does not answer ${url.pathname}: a kube-proxy without inspect, or not kube-proxy at all\n`);
    return 1;
  }
  let body: unknown;
  try {
    body = JSON.parse(answer.body);
  } catch {
    io.stderr(`Error: unexpected answer from ${url.origin} (HTTP ${answer.status}): ${answer.body.slice(0, 200)}\n`);
    return 1;
  }
  if (answer.status !== 200) {
    const message = (body as { error?: string }).error ?? answer.body;
    io.stderr(`Error: kube-proxy answered ${answer.status}: ${message}\n`);
    return 1;
  }
  if (parsed.output === 'json') io.stdout(`${JSON.stringify(body, null, 2)}\n`);
  else if (parsed.command === 'inspect') io.stdout(formatInspect(body as InspectReport, parsed.service !== undefined));
  else io.stdout(formatExplain(body as Explanation));
  return 0;
}
