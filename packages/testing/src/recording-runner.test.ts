import { describe, expect, it } from 'vitest';
import { createRecordingRunner } from './recording-runner.js';

describe('createRecordingRunner', () => {
  it('records command, args and stdin of every call and answers code 0 with empty output by default', async () => {
    const runner = createRecordingRunner();
    const r1 = await runner.run('iptables-save', ['-t', 'nat']);
    const r2 = await runner.run('iptables-restore', ['--noflush'], { stdin: '*nat\nCOMMIT\n' });
    const r3 = await runner.run('nft', ['-f', '-'], { stdin: new TextEncoder().encode('flush ruleset') });
    expect([r1, r2, r3]).toEqual([
      { code: 0, stdout: '', stderr: '' },
      { code: 0, stdout: '', stderr: '' },
      { code: 0, stdout: '', stderr: '' },
    ]);
    expect(runner.calls.map((c) => [c.command, c.args, c.stdin])).toEqual([
      ['iptables-save', ['-t', 'nat'], undefined],
      ['iptables-restore', ['--noflush'], '*nat\nCOMMIT\n'],
      ['nft', ['-f', '-'], 'flush ruleset'],
    ]);
    expect(runner.callsTo('nft')).toHaveLength(1);
    expect(runner.stdinsTo('iptables-restore')).toEqual(['*nat\nCOMMIT\n']);
  });

  it('answers from scripted responses, functions of args and stdin included', async () => {
    const runner = createRecordingRunner();
    runner.on('iptables-save', { stdout: '*filter\nCOMMIT\n' });
    runner.on('iptables-restore', (args, stdin) => (stdin?.includes('BAD') ? { code: 2, stderr: `line 1 failed (${args[0]})` } : {}));
    expect(await runner.run('iptables-save', [])).toEqual({ code: 0, stdout: '*filter\nCOMMIT\n', stderr: '' });
    expect(await runner.run('iptables-restore', ['-w'], { stdin: 'BAD' })).toEqual({ code: 2, stdout: '', stderr: 'line 1 failed (-w)' });
    expect((await runner.run('iptables-restore', ['-w'], { stdin: 'ok' })).code).toBe(0);
    expect(runner.calls[1]!.result).toEqual({ code: 2, stdout: '', stderr: 'line 1 failed (-w)' });
  });

  it('lets the latest registration win, filters by args, and serves once() before on()', async () => {
    const runner = createRecordingRunner();
    runner.on('ipset', { stdout: 'old' });
    runner.on('ipset', { stdout: 'new' });
    runner.on('ipset', { stdout: 'list' }, (args) => args[0] === 'list');
    runner.once('ipset', { code: 1, stderr: 'busy' });
    expect((await runner.run('ipset', ['restore'])).stderr).toBe('busy');
    expect((await runner.run('ipset', ['restore'])).stdout).toBe('new');
    expect((await runner.run('ipset', ['list'])).stdout).toBe('list');
  });

  it('rejects when a responder throws (the command could not start) and still records the call', async () => {
    const runner = createRecordingRunner();
    runner.on('conntrack', () => {
      throw new Error('spawn conntrack ENOENT');
    });
    await expect(runner.run('conntrack', ['-D'])).rejects.toThrow(/ENOENT/);
    expect(runner.callsTo('conntrack')[0]!.result).toBeUndefined();
  });

  it('in strict mode rejects unscripted commands; a default response applies otherwise', async () => {
    const strict = createRecordingRunner({ strict: true });
    await expect(strict.run('ipvsadm', ['-Ln'])).rejects.toThrow(/no response scripted for ipvsadm -Ln/);
    const defaulted = createRecordingRunner({ defaultResponse: { code: 127, stderr: 'not found' } });
    expect(await defaulted.run('anything', [])).toEqual({ code: 127, stdout: '', stderr: 'not found' });
  });

  it('reset() forgets calls but keeps responders; clearResponses() the opposite', async () => {
    const runner = createRecordingRunner();
    runner.on('nft', { stdout: 'x' });
    await runner.run('nft', ['list']);
    runner.reset();
    expect(runner.calls).toEqual([]);
    expect((await runner.run('nft', ['list'])).stdout).toBe('x');
    runner.clearResponses();
    expect((await runner.run('nft', ['list'])).stdout).toBe('');
    expect(runner.calls).toHaveLength(2);
  });

  it('copies args so later mutation by the caller does not rewrite history', async () => {
    const runner = createRecordingRunner();
    const args = ['-A', 'KUBE-SERVICES'];
    await runner.run('iptables', args);
    args[1] = 'CHANGED';
    expect(runner.calls[0]!.args).toEqual(['-A', 'KUBE-SERVICES']);
  });
});
