// Traffic checks shared by the e2e suites: which pods answer, and a refusal that is not a timeout.

import { expect } from 'vitest';
import type { Backend, NodeInfo, Protocol } from '@kube-proxy-ts/core';
import type { Sandbox } from '@kube-proxy-ts/testing';

/**
 * Distinct answers (pod names, or "error: ...") to `tries` HTTP requests, each a new connection.
 * With `expected`, up to 4 x `tries` while one of those has not answered yet: endpoints are picked
 * at random, and 8 requests to 2 of them all reach the same one once in 128 runs.
 */
export async function answers(sb: Sandbox, from: string, host: string, port: number, tries: number, expected?: Iterable<string>): Promise<Set<string>> {
  const seen = new Set<string>();
  const wanted = [...(expected ?? [])];
  for (let i = 0; i < tries || (i < 4 * tries && wanted.some((w) => !seen.has(w))); i++) {
    const r = await sb.tryHttp(from, host, port, { timeoutMs: 3000 });
    seen.add(r.ok ? r.body : `error: ${r.error}`);
  }
  return seen;
}

/**
 * Connecting is refused (a reject), well before curl's 3 s timeout. An ICMPv6 error that comes
 * back over veth while connect() still holds the socket is only a soft error to Linux
 * (TcpExtLockDroppedIcmps): over IPv6 the refusal comes with the SYN retransmitted after 1 s.
 */
export async function expectRefusedAtOnce(sb: Sandbox, from: string, host: string, port: number): Promise<void> {
  const started = Date.now();
  const r = await sb.tryHttp(from, host, port, { timeoutMs: 3000 });
  expect(r.ok).toBe(false);
  expect(r.error ?? '').toMatch(/refused|Couldn't connect/i);
  expect(Date.now() - started).toBeLessThan(host.includes(':') ? 2500 : 1500);
}

/** Every request (each a new connection) is answered, and always by the same pod. */
export async function expectOneAnswer(sb: Sandbox, from: string, host: string, port: number, tries: number): Promise<string> {
  const seen = [...(await answers(sb, from, host, port, tries))];
  expect(seen).toHaveLength(1);
  expect(seen[0]).not.toMatch(/^error: /);
  return seen[0]!;
}

/** A started backend and the node it programs, for `explain`. */
export interface Explainable {
  readonly backend: Backend;
  readonly node: NodeInfo;
}

/** The sandbox's name for an address: a pod's name, or the address itself. */
function podAt(sb: Sandbox, hostPort: string): string {
  const ip = hostPort.replace(/^\[(.*)\]:\d+$/, '$1').replace(/^([^:]+):\d+$/, '$1');
  return sb.pods.find((p) => p.ip === ip || p.ipv6 === ip)?.name ?? hostPort;
}

/** The source address of a sandbox namespace, as `explain` needs it. */
function sourceOf(sb: Sandbox, from: string, ipv6: boolean): string {
  const roles: Record<string, { readonly ip: string; readonly ipv6: string | undefined } | undefined> = { client: sb.client, external: sb.external, node: sb.node };
  const host = roles[from] ?? sb.pods.find((p) => p.name === from);
  const address = ipv6 ? host?.ipv6 : host?.ip;
  if (!address) throw new Error(`no ${ipv6 ? 'IPv6' : 'IPv4'} address for sandbox namespace ${from}`);
  return address;
}

/**
 * What the backend's `explain` says a new connection from `from` to `host:port` reaches, as pod
 * names: the endpoints of its accepted paths (affinity-only paths aside), or `drop`/`reject`.
 */
export async function explainedReach(sb: Sandbox, at: Explainable, from: string, host: string, port: number, protocol: Protocol = 'TCP'): Promise<Set<string>> {
  if (!at.backend.explain) throw new Error(`backend ${at.backend.name} has no explain()`);
  const e = await at.backend.explain({ src: sourceOf(sb, from, host.includes(':')), dst: host, port, protocol }, at.node);
  const reached = new Set<string>();
  for (const path of e.paths) {
    if (path.affinity || path.probability === 0) continue;
    reached.add(path.verdict === 'accept' && path.endpoint ? podAt(sb, path.endpoint) : path.verdict);
  }
  return reached;
}

/**
 * The pods that answer `tries` new connections are exactly `pods`, and the backend's `explain`,
 * reading the rules the kernel holds, names the same endpoints.
 */
export async function expectReaches(sb: Sandbox, at: Explainable, from: string, host: string, port: number, tries: number, pods: readonly string[], message?: string): Promise<void> {
  expect(await answers(sb, from, host, port, tries, pods), message).toEqual(new Set(pods));
  expect(await explainedReach(sb, at, from, host, port), `explain ${from} -> ${host}:${port}${message ? ` (${message})` : ''}`).toEqual(new Set(pods));
}
