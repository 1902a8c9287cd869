import { describe, expect, it } from 'vitest';
import { createExecRunner } from './exec-runner.js';

describe('createExecRunner', () => {
  it('passes argv and stdin without a shell and reports the exit code', async () => {
    const runner = createExecRunner();
    const result = await runner.run('sh', ['-c', 'cat; echo "$1" >&2; exit 3', 'sh', '$HOME'], { stdin: 'payload\n' });
    expect(result).toEqual({ code: 3, stdout: 'payload\n', stderr: '$HOME\n' });
  });

  it('rejects when the command does not exist', async () => {
    await expect(createExecRunner().run('no-such-command-kpts', [])).rejects.toThrow(/ENOENT/);
  });

  it('kills a command that outlives its timeout', async () => {
    const result = await createExecRunner().run('sleep', ['5'], { timeoutMs: 50 });
    expect(result.code).toBe(124);
    expect(result.stderr).toContain('sleep: timed out after 50 ms');
  });
});
