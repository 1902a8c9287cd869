import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '@kube-proxy-ts/core';
import { runIpBatch } from './batches.js';

describe('runIpBatch', () => {
  it('runs ip -force -batch in bounded batches and goes on past a failing one', async () => {
    const stdins: string[] = [];
    const runner: CommandRunner = {
      async run(command, args, options) {
        expect([command, ...args]).toEqual(['ip', '-force', '-batch', '-']);
        stdins.push(String(options?.stdin));
        return stdins.length === 1 ? { code: 1, stdout: '', stderr: 'RTNETLINK answers: Cannot assign requested address\n' } : { code: 0, stdout: '', stderr: '' };
      },
    };
    const payload = ['address del 10.96.0.1/32 dev kube-ipvs0', 'address add 10.96.0.2/32 dev kube-ipvs0', 'address add 10.96.0.3/32 dev kube-ipvs0', ''].join('\n');
    expect(await runIpBatch(runner, payload, { maxLines: 2 })).toEqual(['RTNETLINK answers: Cannot assign requested address']);
    expect(stdins).toEqual(['address del 10.96.0.1/32 dev kube-ipvs0\naddress add 10.96.0.2/32 dev kube-ipvs0\n', 'address add 10.96.0.3/32 dev kube-ipvs0\n']);
    expect(await runIpBatch(runner, '')).toEqual([]);
  });
});
