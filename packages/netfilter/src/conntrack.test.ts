import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CommandRunner, ProxyState } from '@kube-proxy-ts/core';
import { changeSetRecord, endpointRecord, servicePortRecord } from '@kube-proxy-ts/core/fixtures';
import { conntrackDeleteArgs, deleteConntrackFlows, planStaleUDPFlows } from './conntrack.js';
import { createExecRunner } from './exec-runner.js';

const udpService = servicePortRecord({
  name: { namespace: 'ns', name: 'dns', port: 'dns', protocol: 'UDP' },
  type: 'NodePort',
  clusterIP: '10.96.0.10',
  port: 53,
  nodePort: 30053,
  targetPort: 53,
  externalIPs: ['192.0.2.1'],
});

const endpoint = endpointRecord('10.0.1.5', 5353, { ready: false, serving: false, terminating: true, nodeName: 'n1', isLocal: true });

const state: ProxyState = {
  ipFamily: 'IPv4',
  services: new Map([[udpService.key, udpService]]),
  endpoints: new Map(),
  node: { name: 'n1', labels: {}, zone: undefined, podCIDRs: [], addresses: [], eligible: true },
};

describe('planStaleUDPFlows', () => {
  it('deletes flows to a removed endpoint by original destination and reply source', () => {
    const filters = planStaleUDPFlows(state, changeSetRecord({ staleUDPEndpoints: [{ servicePort: udpService.key, endpoint }] }));
    expect(filters).toEqual([
      { protocol: 'udp', origDst: '10.96.0.10', origDstPort: 53, replySrc: '10.0.1.5', replySrcPort: 5353 },
      { protocol: 'udp', origDst: '192.0.2.1', origDstPort: 53, replySrc: '10.0.1.5', replySrcPort: 5353 },
      { protocol: 'udp', origDstPort: 30053, replySrc: '10.0.1.5', replySrcPort: 5353 },
    ]);
  });

  it('deletes everything to a deleted ClusterIP and un-DNATed flows of newly active services', () => {
    const filters = planStaleUDPFlows(state, changeSetRecord({ deletedUDPClusterIPs: new Set(['10.96.0.99']), newlyActiveUDPServices: new Set([udpService.key]) }));
    expect(filters).toContainEqual({ protocol: 'udp', origDst: '10.96.0.99' });
    expect(filters).toContainEqual({ protocol: 'udp', origDst: '10.96.0.10', origDstPort: 53, replySrc: '10.96.0.10' });
    expect(filters).toContainEqual({ protocol: 'udp', origDstPort: 30053 });
  });
});

describe('deleteConntrackFlows', () => {
  it('runs conntrack -D per filter, treating "0 deleted" as success', async () => {
    const calls: string[][] = [];
    const runner: CommandRunner = {
      run(_cmd, args) {
        calls.push([...args]);
        const n = calls.length === 1 ? 2 : 0;
        return Promise.resolve({ code: n ? 0 : 1, stdout: '', stderr: `conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been deleted.\n` });
      },
    };
    const result = await deleteConntrackFlows(runner, 'IPv6', [{ protocol: 'udp', origDst: 'fd00::a' }, { protocol: 'udp', origDstPort: 1 }]);
    expect(result).toEqual({ deleted: 2, failures: 0 });
    expect(calls[0]).toEqual(['-D', '-f', 'ipv6', '-p', 'udp', '--orig-dst', 'fd00::a']);
  });

  it('counts real failures and a missing tool without throwing', async () => {
    const runner: CommandRunner = { run: () => Promise.reject(new Error('ENOENT')) };
    expect(await deleteConntrackFlows(runner, 'IPv4', [{ protocol: 'udp' }])).toEqual({ deleted: 0, failures: 1 });
    expect(conntrackDeleteArgs('IPv4', { protocol: 'udp', origDstPort: 53, replySrcPort: 5353 })).toEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-port-dst', '53', '--reply-port-src', '5353']);
  });

  it('kills a conntrack -D that hangs and counts it as a failure instead of holding the sync', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpts-conntrack-'));
    try {
      const hangingConntrack = join(dir, 'conntrack');
      await writeFile(hangingConntrack, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
      const exec = createExecRunner();
      const runner: CommandRunner = { run: (_cmd, args, options) => exec.run(hangingConntrack, args, options) };
      const warnings: unknown[] = [];
      const logger = { warn: (obj: unknown) => warnings.push(obj), debug: () => undefined };
      const start = performance.now();
      const result = await deleteConntrackFlows(runner, 'IPv4', [{ protocol: 'udp', origDst: '10.96.0.10' }], logger, 200);
      expect(performance.now() - start).toBeLessThan(1_500);
      expect(result).toEqual({ deleted: 0, failures: 1 });
      expect(JSON.stringify(warnings)).toContain('timed out after 200 ms');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
