import type { CommandResult, CommandRunner } from '@kube-proxy-ts/core';
import { describe, expect, it } from 'vitest';
import { deleteJumps, ensureJumps, hasJump, isJumpRule, jumpRule, jumpRuleArgs } from './jump-rules.js';

const services = jumpRule('filter', 'FORWARD', 'KUBE-SERVICES', 'kubernetes service portals', ['-m', 'conntrack', '--ctstate', 'NEW']);
const nodePorts = jumpRule('nat', 'OUTPUT', 'KUBE-NODEPORT-HOST', 'handle service NodePorts', ['-m', 'addrtype', '--dst-type', 'LOCAL'], 'last');
const options = { iptables: 'iptables-nft', timeoutMs: 1000 };

/** Answers each call with `answer(args)` and records the arguments. */
function scripted(answer: (args: readonly string[]) => Partial<CommandResult>): CommandRunner & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async run(_command, args) {
      calls.push([...args]);
      return { code: 0, stdout: '', stderr: '', ...answer(args) };
    },
  };
}

describe('jump rules', () => {
  it('writes upstream’s argument order: matches, comment, target', () => {
    expect(jumpRuleArgs(services)).toEqual(['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
  });

  it('finds a jump as iptables-save prints it, also with its matches in another order', () => {
    const saved = '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES';
    const reordered = '-m comment --comment "kubernetes service portals" -m conntrack --ctstate NEW -j KUBE-SERVICES';
    expect(isJumpRule(saved, services)).toBe(true);
    expect(isJumpRule(reordered, services)).toBe(true);
    expect(isJumpRule('-m comment --comment "kubernetes service portals" -j KUBE-OTHER', services)).toBe(false);
    expect(isJumpRule('-m comment --comment "another comment" -j KUBE-SERVICES', services)).toBe(false);
    expect(hasJump(['-j ACCEPT', saved], services)).toBe(true);
    expect(hasJump(['-j ACCEPT'], services)).toBe(false);
  });

  it('adds only the missing jumps, each at its position, and says why an insert failed', async () => {
    let failInserts = false;
    const runner = scripted((args) => {
      if (args.includes('-C')) return { code: args.includes('KUBE-NODEPORT-HOST') || failInserts ? 1 : 0 };
      return failInserts ? { code: 1, stderr: 'Chain KUBE-SERVICES does not exist' } : {};
    });
    expect(await ensureJumps(runner, [services, nodePorts], options)).toBe(1);
    expect(runner.calls.map((args) => args.slice(0, 6).join(' '))).toEqual([
      '-w -t filter -C FORWARD -m',
      '-w -t nat -C OUTPUT -m',
      '-w -t nat -A OUTPUT -m',
    ]);
    failInserts = true;
    await expect(ensureJumps(runner, [services], options)).rejects.toThrow(/adding the jump from filter FORWARD to KUBE-SERVICES: Chain KUBE-SERVICES does not exist/);
    expect(runner.calls.at(-1)?.slice(0, 6).join(' ')).toBe('-w -t filter -I FORWARD 1');
  });

  it('deletes every copy of a jump, and a jump that is not there is no error', async () => {
    let copies = 2;
    const deleting = scripted((args) => (args.includes('FORWARD') && copies-- > 0 ? {} : { code: 1, stderr: 'does a matching rule exist' }));
    await deleteJumps(deleting, [services, nodePorts], options);
    expect(deleting.calls.map((args) => `${args[2]} ${args[3]} ${args[4]}`)).toEqual([
      'filter -D FORWARD',
      'filter -D FORWARD',
      'filter -D FORWARD',
      'nat -D OUTPUT',
    ]);
  });
});
