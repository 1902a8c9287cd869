// IP and CIDR validation without any networking module. Every address that reaches a rule
// passes through here first, and comes out in one canonical spelling (lowercase, RFC 5952
// compression for IPv6), so that the same address never shows up under two names.

import type { IPFamily } from './model.js';

export interface ParsedIP {
  readonly family: IPFamily;
  /** 4 bytes for IPv4, 16 for IPv6. */
  readonly bytes: Uint8Array;
  /** Canonical text form. */
  readonly text: string;
}

export interface ParsedCIDR {
  readonly family: IPFamily;
  /** The network address (host bits cleared), canonical. */
  readonly ip: string;
  readonly prefixLength: number;
  /** `ip/prefixLength`, canonical. */
  readonly text: string;
  /** The address as written before masking, canonical. */
  readonly address: string;
}

const DECIMAL = /^[0-9]{1,3}$/;
const HEXTET = /^[0-9a-fA-F]{1,4}$/;

function parseIPv4Bytes(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    // Leading zeros are read as decimal, as Kubernetes' "sloppy" parser does for old objects.
    if (!DECIMAL.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    bytes[i] = n;
  }
  return bytes;
}

function parseIPv6Bytes(s: string): Uint8Array | undefined {
  if (s.length < 2 || s.length > 45) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const words: number[][] = [];
  for (const half of halves) {
    const groups: number[] = [];
    if (half !== '') {
      const parts = half.split(':');
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i] as string;
        if (i === parts.length - 1 && p.includes('.')) {
          // Embedded IPv4 in the last 32 bits, e.g. ::ffff:10.0.0.1.
          if (half !== halves[halves.length - 1]) return undefined;
          const v4 = parseIPv4Bytes(p);
          if (!v4) return undefined;
          groups.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
        } else {
          if (!HEXTET.test(p)) return undefined;
          groups.push(parseInt(p, 16));
        }
      }
    }
    words.push(groups);
  }
  const head = words[0] ?? [];
  const tail = words[1] ?? [];
  const compressed = halves.length === 2;
  const total = head.length + tail.length;
  if (compressed ? total > 7 : total !== 8) return undefined;
  const all = [...head, ...new Array<number>(8 - total).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function formatIPv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[2 * i] as number) << 8) | (b[2 * i + 1] as number));
  // RFC 5952: compress the longest run (>= 2) of zero words, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestLen < 2) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

function isIPv4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Parses an IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) count as IPv4,
 * as they do for Kubernetes. Zones (%eth0), brackets and surrounding spaces are rejected.
 */
export function parseIP(s: string | undefined | null): ParsedIP | undefined {
  if (typeof s !== 'string' || s === '') return undefined;
  if (!s.includes(':')) {
    const bytes = parseIPv4Bytes(s);
    return bytes ? { family: 'IPv4', bytes, text: formatIPv4(bytes) } : undefined;
  }
  const bytes = parseIPv6Bytes(s);
  if (!bytes) return undefined;
  if (isIPv4Mapped(bytes)) {
    const v4 = bytes.slice(12);
    return { family: 'IPv4', bytes: v4, text: formatIPv4(v4) };
  }
  return { family: 'IPv6', bytes, text: formatIPv6(bytes) };
}

export function isValidIP(s: string | undefined | null): boolean {
  return parseIP(s) !== undefined;
}

/** The family of an address, or undefined when it is not a valid IP. */
export function ipFamilyOf(s: string | undefined | null): IPFamily | undefined {
  return parseIP(s)?.family;
}

/** The canonical spelling of an address, or undefined when it is not a valid IP. */
export function canonicalIP(s: string | undefined | null): string | undefined {
  return parseIP(s)?.text;
}

/** Parses `ip/prefix`. A plain address (no `/`) is not a CIDR. */
export function parseCIDR(s: string | undefined | null): ParsedCIDR | undefined {
  if (typeof s !== 'string') return undefined;
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIP(s.slice(0, slash));
  const prefixText = s.slice(slash + 1);
  if (!ip || !/^[0-9]{1,3}$/.test(prefixText)) return undefined;
  const prefixLength = Number(prefixText);
  // A mapped IPv4 address keeps an IPv6 prefix length in its text; only plain spellings here.
  if (s.slice(0, slash).includes(':') && ip.family === 'IPv4') return undefined;
  const maxBits = ip.bytes.length * 8;
  if (prefixLength > maxBits) return undefined;
  const masked = new Uint8Array(ip.bytes);
  for (let bit = prefixLength; bit < maxBits; bit++) {
    const i = bit >> 3;
    masked[i] = (masked[i] as number) & ~(0x80 >> (bit & 7));
  }
  const net = ip.family === 'IPv4' ? formatIPv4(masked) : formatIPv6(masked);
  return { family: ip.family, ip: net, prefixLength, text: `${net}/${prefixLength}`, address: ip.text };
}

/** The family of a CIDR, or undefined when it is not a valid CIDR. */
export function cidrFamilyOf(s: string | undefined | null): IPFamily | undefined {
  return parseCIDR(s)?.family;
}

export function isValidCIDR(s: string | undefined | null): boolean {
  return parseCIDR(s) !== undefined;
}

/** Whether `ip` lies inside `cidr` (both already valid; false when the families differ). */
export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCIDR(cidr);
  const a = parseIP(ip);
  if (!c || !a || c.family !== a.family) return false;
  const netBytes = (parseIP(c.ip) as ParsedIP).bytes;
  for (let bit = 0; bit < c.prefixLength; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    if (((netBytes[i] as number) & m) !== ((a.bytes[i] as number) & m)) return false;
  }
  return true;
}

/** `ip:port`, or `[ip]:port` for IPv6, as Go's net.JoinHostPort. */
export function joinHostPort(ip: string, port: number | string): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Whether `n` is a valid port number (1..65535). */
export function isValidPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}
