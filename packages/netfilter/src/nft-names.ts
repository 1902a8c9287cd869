// Object names in upstream's nftables layout: `<prefix><HASH>-<name>`, where HASH is the first 8
// characters of base32(sha256(name)). The hash keeps names distinct at a glance when they differ
// only in one digit, and keeps truncated names unique.

import { createHash } from 'node:crypto';

/** nft limits chain and set names to 256 bytes; upstream keeps the hashed part within 240. */
const NAME_BASE_MAX = 240;

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 with padding, as Go's base32.StdEncoding. */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

/** `HASH-name`, cut to 240 characters with a trailing "..." when longer. */
export function nftHashedName(name: string): string {
  const hash = base32Encode(createHash('sha256').update(name).digest()).slice(0, 8);
  const full = `${hash}-${name}`;
  return full.length > NAME_BASE_MAX ? `${full.slice(0, NAME_BASE_MAX - 3)}...` : full;
}

export interface NftServicePortRef {
  readonly namespace: string;
  readonly name: string;
  /** The service port's name ("" when unnamed). */
  readonly port: string;
  readonly protocol: string;
}

/**
 * `ns/svc/proto/port`: the characters allowed in Kubernetes names are all valid in nft names.
 * Core refuses other names; the nft transaction writer refuses any name that is not one token.
 */
export function nftServicePortName(ref: NftServicePortRef): string {
  return `${ref.namespace}/${ref.name}/${ref.protocol.toLowerCase()}/${ref.port}`;
}

/** `ns/svc/proto/port__ip/port`; IPv6 colons become dots, since nft names do not allow ':'. */
export function nftEndpointName(ref: NftServicePortRef, ip: string, port: number): string {
  return `${nftServicePortName(ref)}__${ip.replaceAll(':', '.')}/${port}`;
}

/** The hashed base of a service port's chains, e.g. `ULMVA6XW-ns1/svc1/tcp/p80`. */
export function nftServiceChainBase(ref: NftServicePortRef): string {
  return nftHashedName(nftServicePortName(ref));
}

/** The hashed base of an endpoint's chain and affinity set. */
export function nftEndpointChainBase(ref: NftServicePortRef, ip: string, port: number): string {
  return nftHashedName(nftEndpointName(ref, ip, port));
}

/** Per-service and per-endpoint objects always contain "/"; the fixed ones never do. */
export function isNftServiceObjectName(name: string): boolean {
  return name.includes('/');
}
