import { describe, expect, it } from 'vitest';
import { IptablesKernelModel } from './kernel-model.test-support.js';

describe('the iptables kernel model the conformance checks write to', () => {
  it('applies a payload whole or not at all, with the kernel’s refusals', () => {
    const model = new IptablesKernelModel();
    model.restore('*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n-A KUBE-SVC-A -j DNAT --to-destination 10.0.0.1:80\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-A\n-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n');
    const before = model.snapshot();
    expect(before.nat!['PREROUTING']).toEqual(['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']);
    // A jump to a chain that does not exist, then a chain deleted while still jumped to: nothing applies.
    expect(() => model.restore('*nat\n:KUBE-SVC-B - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-C\nCOMMIT\n')).toThrow(/line 3 failed: no chain\/target KUBE-SVC-C/);
    expect(() => model.restore('*nat\n:KUBE-SVC-A - [0:0]\n-X KUBE-SVC-A\nCOMMIT\n')).toThrow(/still referenced from KUBE-SERVICES/);
    expect(model.snapshot()).toEqual(before);
    // `:CHAIN` flushes, -D deletes the exact rule, -X a chain nothing jumps to.
    model.restore('*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n-X KUBE-SVC-A\n-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n');
    expect(model.snapshot().nat).toMatchObject({ PREROUTING: [], 'KUBE-SERVICES': [] });
    expect(model.snapshot().nat!['KUBE-SVC-A']).toBeUndefined();
  });

  it('answers iptables-save and the single-rule commands from what it holds', async () => {
    const model = new IptablesKernelModel();
    const runner = model.runner({ iptables: 'iptables-nft', save: 'iptables-nft-save', restore: 'iptables-nft-restore' }, { run: async () => ({ code: 0, stdout: 'other', stderr: '' }) });
    expect((await runner.run('iptables-nft', ['-w', '-t', 'nat', '-N', 'KUBE-X'])).code).toBe(0);
    expect((await runner.run('iptables-nft', ['-w', '-t', 'nat', '-C', 'OUTPUT', '-j', 'KUBE-X'])).code).toBe(1);
    expect((await runner.run('iptables-nft', ['-w', '-t', 'nat', '-I', 'OUTPUT', '1', '-m', 'comment', '--comment', 'a b', '-j', 'KUBE-X'])).code).toBe(0);
    expect((await runner.run('iptables-nft', ['-w', '-t', 'nat', '-C', 'OUTPUT', '-m', 'comment', '--comment', 'a b', '-j', 'KUBE-X'])).code).toBe(0);
    expect((await runner.run('iptables-nft', ['-w', '-t', 'nat', '-S', 'OUTPUT'])).stdout).toBe('-P OUTPUT ACCEPT\n-A OUTPUT -m comment --comment "a b" -j KUBE-X\n');
    expect((await runner.run('iptables-nft-save', ['-t', 'nat'])).stdout).toContain(':KUBE-X - [0:0]\n');
    expect((await runner.run('sysctl', ['-n', 'x'])).stdout).toBe('other');
  });
});
