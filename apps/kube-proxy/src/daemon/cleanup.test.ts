import { describe, expect, it } from 'vitest';
import { defaultProxyConfig, realClock } from '@kube-proxy-ts/core';
import { createRecordingRunner, createTestLogger } from '@kube-proxy-ts/testing';
import { loadBackendFactory } from './backend-loader.js';
import { cleanupAll } from './cleanup.js';
import { createRegistry } from './metrics.js';

describe('--cleanup with the built-in backends', () => {
  it('only removes: no module loading, no sysctl write, no IPVS timeouts, no device created', async () => {
    // A node where every mode left something behind: all tools answer, kube-ipvs0 exists.
    const runner = createRecordingRunner();
    runner.on('ip', { stdout: JSON.stringify([{ ifname: 'kube-ipvs0', addr_info: [{ family: 'inet', local: '10.96.0.10', prefixlen: 32 }] }]) }, (a) => a.includes('show'));
    const failures = await cleanupAll({
      config: defaultProxyConfig(),
      nodeName: 'node1',
      logger: createTestLogger(),
      registry: createRegistry(),
      runner,
      clock: realClock,
      loadFactory: (mode) => loadBackendFactory(mode),
    });
    expect(failures).toEqual([]);
    const lines = runner.calls.map((c) => [c.command, ...c.args].join(' '));
    // Cleanup did reach the IPVS leftovers...
    expect(lines).toContain('ip link del kube-ipvs0');
    // ...without changing the node's settings on the way.
    expect(lines.filter((l) => l.startsWith('modprobe'))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('sysctl') && !l.startsWith('sysctl -n '))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('ipvsadm --set'))).toEqual([]);
    expect(lines.filter((l) => / (add|set) .*kube-ipvs0|link add/.test(l))).toEqual([]);
    // No chain created nor jump inserted (userspace), no open-file limit raised.
    expect(lines.filter((l) => / -(N|I|A) /.test(l) && /^(ip6?tables)/.test(l))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('prlimit'))).toEqual([]);
  });
});
