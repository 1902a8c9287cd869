import { describe, expect, it } from 'vitest';
import { connectionLimits, MAX_TCP_CONNECTIONS, MAX_UDP_SESSIONS, parseFileLimit, withLimits, WANTED_FILE_LIMIT } from './fd-limit.js';

describe('parseFileLimit', () => {
  it('reads the soft and hard limits of /proc/<pid>/limits', () => {
    const limits = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n';
    expect(parseFileLimit(limits)).toEqual({ soft: 1024, hard: 524288 });
    expect(parseFileLimit('Max open files            unlimited            unlimited            files')).toEqual({ soft: Infinity, hard: Infinity });
    expect(parseFileLimit('Max processes 10 10')).toBeUndefined();
  });
});

describe('connectionLimits', () => {
  it('fits TCP connections (two descriptors) and UDP sessions (one) within the open-file limit, with a reserve', () => {
    for (const soft of [64, 1024, 4096, 65_536, 1_048_576]) {
      const l = connectionLimits({ soft, hard: soft });
      const descriptors = 2 * l.tcpConnections + l.udpSessions;
      expect(descriptors).toBeLessThanOrEqual(soft - Math.min(1024, soft / 4));
      expect(l.tcpConnectionsPerServicePort).toBeLessThan(l.tcpConnections);
      expect(l.udpSessionsPerServicePort).toBeLessThan(l.udpSessions);
    }
  });

  it('derives the defaults from the soft limit', () => {
    expect(connectionLimits({ soft: 1024, hard: 4096 })).toMatchObject({
      tcpConnections: 192,
      tcpConnectionsPerServicePort: 96,
      udpSessions: 384,
      udpSessionsPerServicePort: 192,
    });
    // Unknown (not Linux): the usual default of 1024. Unlimited: what the proxy asks for.
    expect(connectionLimits(undefined)).toEqual(connectionLimits({ soft: 1024, hard: 1024 }));
    expect(connectionLimits({ soft: Infinity, hard: Infinity })).toEqual(connectionLimits({ soft: WANTED_FILE_LIMIT, hard: WANTED_FILE_LIMIT }));
  });

  it('keeps connections and sessions within memory bounds when descriptors are plentiful', () => {
    const l = connectionLimits({ soft: WANTED_FILE_LIMIT, hard: WANTED_FILE_LIMIT });
    expect([l.tcpConnections, l.udpSessions]).toEqual([MAX_TCP_CONNECTIONS, MAX_UDP_SESSIONS]);
    expect(connectionLimits({ soft: 65_536, hard: 65_536 }).tcpConnections).toBe(16_128); // just under the cap
  });

  it('keeps ClientIP pins bounded whatever the limit', () => {
    const l = connectionLimits({ soft: Infinity, hard: Infinity });
    expect(l.affinityClientsPerServicePort).toBeLessThanOrEqual(l.affinityClients);
    expect(Number.isFinite(l.affinityClients)).toBe(true);
  });
});

describe('withLimits', () => {
  const base = connectionLimits({ soft: 1024, hard: 1024 });

  it('overrides the given limits only', () => {
    expect(withLimits(base, { udpSessions: 10 })).toEqual({ ...base, udpSessions: 10 });
    expect(withLimits(base, {})).toEqual(base);
  });

  it('refuses bounds that would refuse every client or are not limits at all', () => {
    expect(() => withLimits(base, { tcpConnections: 0 })).toThrow(/tcpConnections must be a positive integer/);
    expect(() => withLimits(base, { udpSessions: Number.NaN })).toThrow(/positive integer/);
    expect(() => withLimits(base, { udpSessions: 1.5 })).toThrow(/positive integer/);
    expect(() => withLimits(base, { maxSockets: 5 } as never)).toThrow(/unknown connection limit "maxSockets"/);
  });
});
