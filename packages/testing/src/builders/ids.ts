// Deterministic stand-ins for what the API server would allocate (ClusterIPs, node ports), so
// a builder called twice with the same names yields the same object.

/** FNV-1a, 32 bit: small, stable, good enough to spread names over an address range. */
export function stableHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A ClusterIP in 172.30.0.0/16 (IPv4) or fd00:30::/64 (IPv6), derived from `namespace/name`. */
export function defaultClusterIP(namespace: string, name: string, family: 'IPv4' | 'IPv6'): string {
  const h = stableHash(`${namespace}/${name}`);
  if (family === 'IPv6') return `fd00:30::${(h & 0xffff).toString(16)}:${((h >>> 16) & 0xffff).toString(16)}`;
  // Avoid .0 and .255 so the address never looks like a network or broadcast address.
  return `172.30.${(h >>> 8) & 0xff}.${1 + (h % 254)}`;
}

/** A node port in the default range 30000-32767, derived from `namespace/name:port/protocol`. */
export function defaultNodePort(key: string): number {
  return 30000 + (stableHash(key) % 2768);
}

export function ipFamilyOfAddress(ip: string): 'IPv4' | 'IPv6' {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}
