import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '@kube-proxy-ts/core';
import { IpvsadmRestoreWriter, ipvsTimeoutArgs, parseIpvsadmList, runIpvsadmRestore, virtualServerKey } from './ipvs.js';

// Captured from `ipvsadm -Ln` (ipvsadm 1.31) on Debian's 6.1 kernel.
const LISTING = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 rr persistent 600
  -> 10.1.0.1:8080                Masq    1      0          0         
  -> 10.1.0.2:8080                Masq    0      3          1         
UDP  10.0.0.2:53 mh (mh-port)
TCP  [fd00::1]:80 sh (sh-fallback,sh-port)
  -> [fd00::5]:80                 Masq    1      0          0         
FWM  7 wrr
  -> 10.9.9.9:0                   Masq    1      0          0         
`;

function scripted(answer: (args: readonly string[], stdin?: string) => { code?: number; stderr?: string }) {
  const calls: { args: readonly string[]; stdin: string }[] = [];
  const runner: CommandRunner = {
    async run(_cmd, args, options) {
      calls.push({ args, stdin: String(options?.stdin ?? '') });
      const r = answer(args, String(options?.stdin ?? ''));
      return { code: r.code ?? 0, stdout: '', stderr: r.stderr ?? '' };
    },
  };
  return { runner, calls };
}

describe('parseIpvsadmList', () => {
  it('reads services, flags, persistence and real servers with connection counts', () => {
    const list = parseIpvsadmList(LISTING);
    expect(list.map((l) => virtualServerKey(l.service))).toEqual(['TCP/10.0.0.1:80', 'UDP/10.0.0.2:53', 'TCP/[fd00::1]:80']);
    expect(list[0]!.service).toMatchObject({ scheduler: 'rr', persistentTimeout: 600, schedulerFlags: [] });
    expect(list[0]!.realServers).toEqual([
      { address: '10.1.0.1', port: 8080, forward: 'Masq', weight: 1, activeConnections: 0, inactiveConnections: 0 },
      { address: '10.1.0.2', port: 8080, forward: 'Masq', weight: 0, activeConnections: 3, inactiveConnections: 1 },
    ]);
    expect(list[1]!.service).toMatchObject({ scheduler: 'mh', schedulerFlags: ['mh-port'], persistentTimeout: undefined });
    expect(list[2]!.service.schedulerFlags).toEqual(['sh-fallback', 'sh-port']);
    expect(list[2]!.realServers[0]).toMatchObject({ address: 'fd00::5', port: 80 });
  });

  it('skips firewall-mark services and their real servers', () => {
    expect(parseIpvsadmList(LISTING).some((l) => l.realServers.some((r) => r.address === '10.9.9.9'))).toBe(false);
  });
});

describe('IpvsadmRestoreWriter', () => {
  it('writes restore lines ipvsadm accepts', () => {
    const vs = { protocol: 'UDP' as const, address: 'fd00::1', port: 53, scheduler: 'mh', schedulerFlags: ['mh-port'], persistentTimeout: 10800 };
    const w = new IpvsadmRestoreWriter()
      .addService(vs)
      .editService({ ...vs, protocol: 'TCP', address: '10.0.0.1', schedulerFlags: [], persistentTimeout: undefined })
      .addRealServer(vs, { address: 'fd00::9', port: 5353, forward: 'Masq', weight: 1 })
      .editRealServer(vs, { address: 'fd00::9', port: 5353, forward: 'Masq', weight: 0 })
      .deleteRealServer(vs, { address: 'fd00::9', port: 5353 })
      .deleteService({ protocol: 'SCTP', address: '10.0.0.3', port: 9 });
    expect(w.toString()).toBe(
      [
        '-A -u [fd00::1]:53 -s mh -b mh-port -p 10800',
        '-E -t 10.0.0.1:53 -s mh',
        '-a -u [fd00::1]:53 -r [fd00::9]:5353 -m -w 1',
        '-e -u [fd00::1]:53 -r [fd00::9]:5353 -m -w 0',
        '-d -u [fd00::1]:53 -r [fd00::9]:5353',
        '-D --sctp-service 10.0.0.3:9',
        '',
      ].join('\n'),
    );
  });
});

describe('runIpvsadmRestore', () => {
  it('runs nothing for an empty payload', async () => {
    const { runner, calls } = scripted(() => ({}));
    expect(await runIpvsadmRestore(runner, '')).toEqual({ ok: true, errors: [], batches: 0 });
    expect(calls).toEqual([]);
  });

  it('splits large payloads into bounded batches, in order', async () => {
    const { runner, calls } = scripted(() => ({}));
    const payload = Array.from({ length: 5 }, (_, i) => `-A -t 10.0.0.${i}:80 -s rr`).join('\n') + '\n';
    const r = await runIpvsadmRestore(runner, payload, { maxLines: 2 });
    expect(r).toMatchObject({ ok: true, batches: 3 });
    expect(calls.map((c) => c.stdin.split('\n').filter(Boolean).length)).toEqual([2, 2, 1]);
    expect(calls.map((c) => c.stdin).join('')).toBe(payload);
  });

  it('reports the complaints ipvsadm prints while still exiting 0', async () => {
    const { runner } = scripted(() => ({ stderr: 'Service already exists\n' }));
    expect(await runIpvsadmRestore(runner, '-A -t 10.0.0.1:80 -s rr\n')).toMatchObject({ ok: false, errors: ['Service already exists'] });
  });
});

describe('ipvsTimeoutArgs', () => {
  it('is undefined when every timeout keeps the kernel value', () => {
    expect(ipvsTimeoutArgs(0, 0, 0)).toBeUndefined();
    expect(ipvsTimeoutArgs(900, 0, 300)).toEqual(['--set', '900', '0', '300']);
  });
});
