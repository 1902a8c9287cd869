// Traffic checks shared by the e2e suites: which pods answer, and a refusal that is not a timeout.

import { expect } from 'vitest';
import type { Sandbox } from '@kube-proxy-ts/testing';

/** Distinct answers (pod names, or "error: ...") to `tries` HTTP requests, each a new connection. */
export async function answers(sb: Sandbox, from: string, host: string, port: number, tries: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
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
