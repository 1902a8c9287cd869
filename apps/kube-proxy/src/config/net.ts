// Host:port forms of the configuration (Go's net.SplitHostPort); addresses and CIDRs are core's.

import { isValidIP, joinHostPort } from '@kube-proxy-ts/core';

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
  return isValidIP(addr) ? joinHostPort(addr, port) : addr;
}

/** Why an "IP:port" bind address is unusable, or undefined when it is fine. */
export function hostPortProblem(text: string): { value: string; detail: string } | undefined {
  const hp = splitHostPort(text);
  if (!hp) return { value: text, detail: 'must be IP:port' };
  if (!isValidIP(hp.host)) return { value: hp.host, detail: 'must be a valid IP' };
  if (!/^\d+$/.test(hp.port) || Number(hp.port) < 1 || Number(hp.port) > 65535) {
    return { value: hp.port, detail: 'must be a valid port' };
  }
  return undefined;
}
