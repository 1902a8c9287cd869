import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '@kube-proxy-ts/core';
import { detectIptablesFlavour, iptablesCommands } from './iptables-flavour.js';

function fakeRunner(outputs: Record<string, string>): CommandRunner & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    run(command, args) {
      const key = [command, ...args].join(' ');
      calls.push(key);
      if (!(command in outputs) && !(key in outputs)) return Promise.reject(new Error(`spawn ${command} ENOENT`));
      return Promise.resolve({ code: 0, stdout: outputs[key] ?? outputs[command] ?? '', stderr: '' });
    },
  };
}

describe('detectIptablesFlavour', () => {
  it('picks the flavour holding more rules', async () => {
    const legacyRules = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j A\n-A INPUT -j B\nCOMMIT\n';
    const nftRules = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j A\nCOMMIT\n';
    const runner = fakeRunner({ 'iptables-legacy-save': legacyRules, 'iptables-nft-save': nftRules });
    expect((await detectIptablesFlavour(runner)).flavour).toBe('legacy');
  });

  it('prefers nft on a tie and when nothing is installed', async () => {
    expect((await detectIptablesFlavour(fakeRunner({}))).flavour).toBe('nft');
  });

  it('trusts a hint chain in mangle over rule counts', async () => {
    const runner = fakeRunner({
      'iptables-legacy-save -t mangle': '*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n',
      'iptables-nft-save': '*filter\n-A INPUT -j A\n-A INPUT -j B\nCOMMIT\n',
    });
    expect(await detectIptablesFlavour(runner)).toMatchObject({ flavour: 'legacy' });
  });

  it('honours an override without running anything', async () => {
    const runner = fakeRunner({});
    expect((await detectIptablesFlavour(runner, 'legacy')).flavour).toBe('legacy');
    expect(runner.calls).toEqual([]);
  });

  it('names the binaries per flavour and family', () => {
    expect(iptablesCommands('nft', 'IPv6')).toMatchObject({ restore: 'ip6tables-nft-restore', save: 'ip6tables-nft-save' });
    expect(iptablesCommands('legacy', 'IPv4').iptables).toBe('iptables-legacy');
  });
});
