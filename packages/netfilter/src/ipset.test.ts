import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '@kube-proxy-ts/core';
import { splitPayload } from './batches.js';
import { canonicalIpsetEntry, ipsetCreateArgs, IpsetRestoreWriter, parseIpsetSave, runIpsetRestore } from './ipset.js';

// Captured from `ipset save` (ipset 7.17).
const SAVE = `create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xfa3513ae
add KUBE-CLUSTER-IP 10.0.0.1,tcp:80
add KUBE-CLUSTER-IP 10.0.0.2,udp:53
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30000
create OTHER hash:ip family inet hashsize 1024 maxelem 65536
add OTHER 1.2.3.4
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.1.1.1,tcp:80,10.0.0.0/8
add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.1.1.1,tcp:80,192.168.1.1
`;

describe('ipset save/restore', () => {
  it('parses the sets that are wanted, with canonical entries', () => {
    const sets = parseIpsetSave(SAVE, (n) => n.startsWith('KUBE-'));
    expect([...sets.keys()]).toEqual(['KUBE-CLUSTER-IP', 'KUBE-NODE-PORT-TCP', 'KUBE-LOAD-BALANCER-SOURCE-CIDR']);
    expect([...sets.get('KUBE-CLUSTER-IP')!.entries]).toEqual(['10.0.0.1,tcp:80', '10.0.0.2,udp:53']);
    expect(sets.get('KUBE-NODE-PORT-TCP')).toEqual({ type: 'bitmap:port', entries: new Set(['30000']) });
    expect(sets.get('KUBE-LOAD-BALANCER-SOURCE-CIDR')!.entries.has('1.1.1.1,tcp:80,192.168.1.1')).toBe(true);
  });

  it('spells host nets and protocols the way ipset prints them', () => {
    expect(canonicalIpsetEntry('1.1.1.1,TCP:80,192.168.1.1/32')).toBe('1.1.1.1,tcp:80,192.168.1.1');
    expect(canonicalIpsetEntry('fd00::1,tcp:80,fd00::2/128')).toBe('fd00::1,tcp:80,fd00::2');
    expect(canonicalIpsetEntry('1.1.1.1,tcp:80,10.0.0.0/8')).toBe('1.1.1.1,tcp:80,10.0.0.0/8');
  });

  it('creates hash sets with a family and bitmap sets with the port range', () => {
    expect(ipsetCreateArgs({ name: 'KUBE-6-CLUSTER-IP', type: 'hash:ip,port', family: 'IPv6' })).toEqual(
      ['create', 'KUBE-6-CLUSTER-IP', 'hash:ip,port', 'family', 'inet6', 'hashsize', '1024', 'maxelem', '65536'],
    );
    expect(ipsetCreateArgs({ name: 'KUBE-NODE-PORT-TCP', type: 'bitmap:port', family: 'IPv4' })).toEqual(
      ['create', 'KUBE-NODE-PORT-TCP', 'bitmap:port', 'range', '0-65535'],
    );
  });

  it('writes idempotent add/del lines', () => {
    const w = new IpsetRestoreWriter().create({ name: 'S', type: 'hash:ip', family: 'IPv4' }).add('S', '1.2.3.4').del('S', '1.2.3.5').destroy('S');
    expect(w.toString()).toBe('create S hash:ip family inet hashsize 1024 maxelem 65536 -exist\nadd S 1.2.3.4 -exist\ndel S 1.2.3.5 -exist\ndestroy S\n');
  });

  it('splits payloads by lines and stops at the first failed batch', async () => {
    expect(splitPayload('', 3)).toEqual([]);
    expect(splitPayload('a\nb\nc\nd\n', 3)).toEqual(['a\nb\nc\n', 'd\n']);
    const stdins: string[] = [];
    const runner: CommandRunner = {
      async run(_c, _a, o) {
        stdins.push(String(o?.stdin));
        return { code: stdins.length === 2 ? 1 : 0, stdout: '', stderr: stdins.length === 2 ? 'Error in line 1' : '' };
      },
    };
    const r = await runIpsetRestore(runner, 'a\nb\nc\nd\ne\n', { maxLines: 2 });
    expect(r).toEqual({ ok: false, stderr: 'Error in line 1', batches: 2 });
    expect(stdins).toEqual(['a\nb\n', 'c\nd\n']);
  });
});
