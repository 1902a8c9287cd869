// ipset through its save/restore text format: one `ipset save` to read, one `ipset restore`
// to apply a batch of creates, adds and deletes.

import type { CommandRunner, IPFamily } from '@kube-proxy-ts/core';
import { splitPayload, type BatchOptions } from './batches.js';
import { assertNoControlCharacters } from './payload-text.js';

export type IpsetType = 'hash:ip' | 'hash:ip,port' | 'hash:ip,port,ip' | 'hash:ip,port,net' | 'bitmap:port';

export interface IpsetSpec {
  readonly name: string;
  readonly type: IpsetType;
  /** Address family of hash sets; bitmap:port sets have none. */
  readonly family: IPFamily;
  /** Describes the set to readers of this code and of iptables comments; not written to ipset (limit 255 bytes there). */
  readonly comment?: string;
}

/** The `create` line arguments of a set (without `-exist`). */
export function ipsetCreateArgs(spec: IpsetSpec): string[] {
  const args = ['create', spec.name, spec.type];
  if (spec.type === 'bitmap:port') args.push('range', '0-65535');
  else args.push('family', spec.family === 'IPv6' ? 'inet6' : 'inet', 'hashsize', '1024', 'maxelem', '65536');
  return args;
}

/** A set's content as `ipset save` shows it. */
export interface IpsetContent {
  readonly type: string;
  readonly entries: Set<string>;
}

/**
 * Canonical spelling of an entry, so desired entries and saved ones compare equal: lower-case
 * protocol names, and no `/32` or `/128` on a net member (ipset prints host nets bare).
 */
export function canonicalIpsetEntry(entry: string): string {
  return entry
    .toLowerCase()
    .split(',')
    .map((part) => part.replace(/^(.*)\/(32|128)$/, (whole, addr: string, bits: string) => (bits === '32' && addr.includes(':') ? whole : addr)))
    .join(',');
}

/** Parses `ipset save` output; only sets accepted by `wanted` are kept. */
export function parseIpsetSave(text: string, wanted: (name: string) => boolean = () => true): Map<string, IpsetContent> {
  const sets = new Map<string, IpsetContent>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'create' && f[1] && f[2] && wanted(f[1])) sets.set(f[1], { type: f[2], entries: new Set() });
    else if (f[0] === 'add' && f[1] && f[2]) sets.get(f[1])?.entries.add(canonicalIpsetEntry(f[2]));
  }
  return sets;
}

// ipset keeps 31 characters of a name; entries are addresses, ports, protocols and CIDRs.
const SET_NAME = /^[A-Za-z0-9_.:-]{1,31}$/;
const ENTRY = /^[A-Za-z0-9_.:,/-]+$/;

/** A set name or an entry as one token of a restore line, or an error. */
function token(text: string, what: 'set name' | 'entry'): string {
  assertNoControlCharacters(text, `ipset ${what}`);
  if (!(what === 'set name' ? SET_NAME : ENTRY).test(text)) throw new Error(`ipset ${what} ${JSON.stringify(text)} is not valid`);
  return text;
}

/** One `ipset restore` payload. */
export class IpsetRestoreWriter {
  private readonly lines: string[] = [];

  create(spec: IpsetSpec): this {
    token(spec.name, 'set name');
    this.lines.push(`${ipsetCreateArgs(spec).join(' ')} -exist`);
    return this;
  }

  add(name: string, entry: string): this {
    this.lines.push(`add ${token(name, 'set name')} ${token(entry, 'entry')} -exist`);
    return this;
  }

  del(name: string, entry: string): this {
    this.lines.push(`del ${token(name, 'set name')} ${token(entry, 'entry')} -exist`);
    return this;
  }

  flush(name: string): this {
    this.lines.push(`flush ${token(name, 'set name')}`);
    return this;
  }

  destroy(name: string): this {
    this.lines.push(`destroy ${token(name, 'set name')}`);
    return this;
  }

  get size(): number {
    return this.lines.length;
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

/** Reads all sets (one process) and keeps those `wanted`. */
export async function saveIpsets(runner: CommandRunner, wanted?: (name: string) => boolean, timeoutMs = 60_000): Promise<Map<string, IpsetContent>> {
  const result = await runner.run('ipset', ['save'], { timeoutMs });
  if (result.code !== 0) throw new Error(`ipset save failed (${result.code}): ${result.stderr.trim()}`);
  return parseIpsetSave(result.stdout, wanted);
}

export interface IpsetRestoreResult {
  readonly ok: boolean;
  readonly stderr: string;
  /** Processes run. */
  readonly batches: number;
}

/**
 * Applies a payload with `ipset restore`, in bounded batches; empty payloads run nothing. Stops
 * at the first failed batch (ipset itself stops at the first failed line).
 */
export async function runIpsetRestore(runner: CommandRunner, payload: string, options: BatchOptions = {}): Promise<IpsetRestoreResult> {
  let batches = 0;
  for (const chunk of splitPayload(payload, options.maxLines ?? 20_000)) {
    batches++;
    const result = await runner.run('ipset', ['restore'], { stdin: chunk, timeoutMs: options.timeoutMs ?? 60_000 });
    if (result.code !== 0) return { ok: false, stderr: result.stderr.trim() || `ipset restore exited ${result.code}`, batches };
  }
  return { ok: true, stderr: '', batches };
}
