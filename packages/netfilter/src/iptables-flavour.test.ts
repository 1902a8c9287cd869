import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '@kube-proxy-ts/core';
import { detectIptablesFlavour, iptablesCommands, iptablesHasRandomFully, parseIptablesVersion } from './iptables-flavour.js';

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

  it("follows its own canary of an earlier run, after kubelet's hints, without dumping every table", async () => {
    const own = fakeRunner({
      'iptables-legacy-save -t mangle': '*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n',
      'iptables-nft-save': '*filter\n-A INPUT -j A\n-A INPUT -j B\nCOMMIT\n',
    });
    expect(await detectIptablesFlavour(own)).toMatchObject({ flavour: 'legacy' });
    expect(own.calls.every((c) => c.endsWith('-t mangle'))).toBe(true);
    const kubelet = fakeRunner({
      'iptables-legacy-save -t mangle': '*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n',
      'ip6tables-nft-save -t mangle': '*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n',
    });
    expect(await detectIptablesFlavour(kubelet)).toMatchObject({ flavour: 'nft' });
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

describe('iptablesHasRandomFully', () => {
  const nft = iptablesCommands('nft', 'IPv4');
  it.each([
    ['iptables v1.8.9 (nf_tables)', true],
    ['iptables v1.6.2', true],
    ['iptables v1.6.1', false],
    ['iptables v1.4.21', false],
    ['iptables v2.0.0 (legacy)', true],
    ['something else', false],
  ])('%s -> %s', async (output, expected) => {
    expect(await iptablesHasRandomFully(fakeRunner({ 'iptables-nft --version': output }), nft)).toBe(expected);
  });

  it('counts a missing binary as too old', async () => {
    expect(await iptablesHasRandomFully(fakeRunner({}), nft)).toBe(false);
  });

  it('parses the version of ip6tables-legacy too', () => {
    expect(parseIptablesVersion('ip6tables-legacy v1.8.9 (legacy)')).toEqual([1, 8, 9]);
  });
});
