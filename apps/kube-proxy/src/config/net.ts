// Address checks the configuration needs (Go's net.ParseIP / ParseCIDR / SplitHostPort forms).

import { isIP } from 'node:net';

/** An IPv4 or IPv6 address without brackets or zone. */
export function isIPAddress(text: string): boolean {
  return isIP(text) !== 0;
}

export function ipFamilyOfAddress(text: string): 'IPv4' | 'IPv6' | undefined {
  const v = isIP(text);
  return v === 4 ? 'IPv4' : v === 6 ? 'IPv6' : undefined;
}

/** "10.0.0.0/8" or "fd00::/64"; returns the family, or undefined when not a CIDR. */
export function cidrFamily(text: string): 'IPv4' | 'IPv6' | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const family = ipFamilyOfAddress(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (!family || !/^\d{1,3}$/.test(prefix)) return undefined;
  const bits = Number(prefix);
  return bits <= (family === 'IPv4' ? 32 : 128) ? family : undefined;
}

/** Splits "host:port" / "[v6]:port" as Go's net.SplitHostPort does; undefined when malformed. */
export function splitHostPort(text: string): { host: string; port: string } | undefined {
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || text[end + 1] !== ':') return undefined;
    return { host: text.slice(1, end), port: text.slice(end + 2) };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0 || text.indexOf(':') !== colon) return undefined;
  return { host: text.slice(0, colon), port: text.slice(colon + 1) };
}

/** Appends the port to a bare IP (upstream's AppendPortIfNeeded); other text is returned as is. */
export function appendPortIfNeeded(addr: string, port: number): string {
  if (splitHostPort(addr)) return addr;
  const family = ipFamilyOfAddress(addr);
  if (family === 'IPv4') return `${addr}:${port}`;
  if (family === 'IPv6') return `[${addr}]:${port}`;
  return addr;
}

/** Why an "IP:port" bind address is unusable, or undefined when it is fine. */
export function hostPortProblem(text: string): { value: string; detail: string } | undefined {
  const hp = splitHostPort(text);
  if (!hp) return { value: text, detail: 'must be IP:port' };
  if (!isIPAddress(hp.host)) return { value: hp.host, detail: 'must be a valid IP' };
  if (!/^\d+$/.test(hp.port) || Number(hp.port) < 1 || Number(hp.port) > 65535) {
    return { value: hp.port, detail: 'must be a valid port' };
  }
  return undefined;
}
