// What `kube-proxy inspect` and `kube-proxy explain` ask the running daemon, on its metrics
// address: GET /debug/kube-proxy/inspect[?service=ns/name] and
// GET /debug/kube-proxy/explain?from=IP&to=IP:PORT/PROTO. Read-only. The kernel is read by one
// request at a time, so a burst of requests cannot multiply iptables-save runs on a large node.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Backend, ExplainPacket, IPFamily, ProxyState, Protocol } from '@kube-proxy-ts/core';
import { buildInspectReport, matchesService, type FamilyReading } from '../inspect/report.js';

export const INSPECT_PATH = '/debug/kube-proxy/inspect';
export const EXPLAIN_PATH = '/debug/kube-proxy/explain';

/** One proxied IP family: its backend and the state of its last successful sync. */
export interface DebugTarget {
  readonly ipFamily: IPFamily;
  readonly backend: Backend;
  readonly state: ProxyState | undefined;
}

export interface DebugSource {
  readonly mode: string;
  /** Empty until the backends have started. */
  targets(): readonly DebugTarget[];
}

export class BadRequest extends Error {}

/** Parses `IP:PORT/PROTO` (`[IPv6]:PORT/PROTO`; PROTO defaults to TCP). */
export function parseDestination(to: string): { dst: string; port: number; protocol: Protocol } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})(?:\/([A-Za-z]+))?$/.exec(to);
  const dst = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  const protocol = (m?.[4] ?? 'TCP').toUpperCase();
  if (!m || !dst || isIP(dst) === 0) throw new BadRequest(`--to ${JSON.stringify(to)}: want IP:PORT/PROTO, e.g. 10.96.0.10:80/TCP or [fd00::10]:53/UDP`);
  if (port < 1 || port > 65535) throw new BadRequest(`--to ${JSON.stringify(to)}: port must be 1..65535`);
  if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') throw new BadRequest(`--to ${JSON.stringify(to)}: protocol must be TCP, UDP or SCTP`);
  return { dst, port, protocol };
}

export function parseExplainQuery(query: URLSearchParams): ExplainPacket {
  const from = query.get('from') ?? '';
  const to = query.get('to') ?? '';
  if (isIP(from) === 0) throw new BadRequest(`--from ${JSON.stringify(from)}: want the client's IP address`);
  const d = parseDestination(to);
  if (isIP(from) !== isIP(d.dst)) throw new BadRequest(`--from ${from} and --to ${d.dst} are of different IP families`);
  return { src: from, ...d };
}

/** A request handler for the metrics server: true when it answered the request. */
export function debugHandler(source: DebugSource): (req: IncomingMessage, res: ServerResponse) => boolean {
  let queue: Promise<unknown> = Promise.resolve();
  // One kernel reading at a time, in arrival order.
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  const inspect = async (query: URLSearchParams) => {
    const filter = query.get('service') ?? undefined;
    if (filter !== undefined && !/^[a-z0-9.-]+\/[a-z0-9.-]+(:[A-Za-z0-9-]+)?$/.test(filter)) throw new BadRequest(`service ${JSON.stringify(filter)}: want namespace/name or namespace/name:port`);
    const readings: FamilyReading[] = [];
    for (const t of source.targets()) {
      const wanted = t.state ? [...t.state.services.values()].filter((sp) => matchesService(filter, sp)) : [];
      if (!t.backend.kernelView) {
        readings.push({ ipFamily: t.ipFamily, state: t.state, kernelError: `the ${t.backend.name} backend cannot read the data plane back` });
        continue;
      }
      try {
        readings.push({ ipFamily: t.ipFamily, state: t.state, kernel: await t.backend.kernelView(wanted) });
      } catch (err) {
        readings.push({ ipFamily: t.ipFamily, state: t.state, kernelError: (err as Error).message });
      }
    }
    return buildInspectReport(source.mode, readings, filter);
  };

  const explain = async (query: URLSearchParams) => {
    const packet = parseExplainQuery(query);
    const family: IPFamily = isIP(packet.dst) === 6 ? 'IPv6' : 'IPv4';
    const t = source.targets().find((x) => x.ipFamily === family);
    if (!t) throw new BadRequest(`this proxy does not handle ${family}`);
    if (!t.backend.explain) throw new Unsupported(`the ${t.backend.name} backend cannot explain a packet`);
    if (!t.state) throw new Unsupported('no sync has completed yet');
    return t.backend.explain(packet, t.state.node);
  };

  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route: ((q: URLSearchParams) => Promise<unknown>) | undefined = url.pathname === INSPECT_PATH ? inspect : url.pathname === EXPLAIN_PATH ? explain : undefined;
    if (!route) return false;
    if (req.method !== 'GET') {
      reply(res, 405, { error: 'only GET' });
      return true;
    }
    serialized(() => route(url.searchParams)).then(
      (body) => reply(res, 200, body),
      (err: Error) => reply(res, err instanceof BadRequest ? 400 : err instanceof Unsupported ? 501 : 500, { error: err.message }),
    );
    return true;
  };
}

export class Unsupported extends Error {}

function reply(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
  res.end(`${JSON.stringify(body)}\n`);
}
