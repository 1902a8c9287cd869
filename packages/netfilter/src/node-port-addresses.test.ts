import { describe, expect, it } from 'vitest';
import type { CommandRunner, Logger } from '@kube-proxy-ts/core';
import { currentNodePortIPs, listLocalAddresses, resolveNodePortAddresses } from './node-port-addresses.js';

describe('resolveNodePortAddresses', () => {
  it('empty means every local address, loopback included for IPv4', () => {
    const all = resolveNodePortAddresses([], 'IPv4');
    expect(all.matchAll).toBe(true);
    expect(all.containsIPv4Loopback).toBe(true);
    expect(all.select(['10.0.0.1', '127.0.0.1', 'fd00::1'])).toEqual(['10.0.0.1', '127.0.0.1']);
    expect(resolveNodePortAddresses([], 'IPv6').containsIPv4Loopback).toBe(false);
  });

  it('keeps CIDRs of its own family only', () => {
    const v4 = resolveNodePortAddresses(['192.168.0.0/16', 'fd00::/64'], 'IPv4');
    expect(v4.matchAll).toBe(false);
    expect(v4.cidrs).toEqual(['192.168.0.0/16']);
    expect(v4.containsIPv4Loopback).toBe(false);
    expect(v4.select(['192.168.1.5', '10.0.0.1', '127.0.0.1'])).toEqual(['192.168.1.5']);
    // only other-family CIDRs: this family matches all, as upstream
    expect(resolveNodePortAddresses(['fd00::/64'], 'IPv4').matchAll).toBe(true);
    expect(resolveNodePortAddresses(['127.0.0.0/8'], 'IPv4').containsIPv4Loopback).toBe(true);
    // The zero CIDR is every address, spelled out.
    expect(resolveNodePortAddresses(['0.0.0.0/0', '::/0'], 'IPv4', '10.1.2.3', { whenUnset: 'primary' }).matchAll).toBe(true);
    expect(resolveNodePortAddresses(['0.0.0.0/0', '::/0'], 'IPv6').matchAll).toBe(true);
  });

  it('resolves "primary" to the node IP of the family', () => {
    const primary = resolveNodePortAddresses(['primary'], 'IPv4', '10.1.2.3');
    expect(primary.cidrs).toEqual(['10.1.2.3/32']);
    expect(primary.select(['10.1.2.3', '10.1.2.4'])).toEqual(['10.1.2.3']);
    expect(resolveNodePortAddresses(['primary'], 'IPv6', 'fd00::5').cidrs).toEqual(['fd00::5/128']);
  });

  it('reads unset as "primary" when the mode says so (nftables), and as every address otherwise', () => {
    const nftables = resolveNodePortAddresses([], 'IPv4', '10.1.2.3', { whenUnset: 'primary' });
    expect(nftables.matchAll).toBe(false);
    expect(nftables.select(['10.1.2.3', '192.168.7.1', '127.0.0.1'])).toEqual(['10.1.2.3']);
    expect(nftables.containsIPv4Loopback).toBe(false);
    expect(resolveNodePortAddresses([], 'IPv4', '10.1.2.3', { whenUnset: 'all' }).matchAll).toBe(true);
    // Set values win over the mode's reading of unset.
    expect(resolveNodePortAddresses(['192.168.0.0/16'], 'IPv4', '10.1.2.3', { whenUnset: 'primary' }).cidrs).toEqual(['192.168.0.0/16']);
  });

  it('leaves a family open on every address when "primary" has no usable node IP of it', () => {
    // A single-stack node: the other family has no primary IP to pin to.
    expect(resolveNodePortAddresses([], 'IPv6', '10.1.2.3', { whenUnset: 'primary' }).matchAll).toBe(true);
    expect(resolveNodePortAddresses(['primary'], 'IPv4', undefined).matchAll).toBe(true);
    // A loopback node IP (no node object) pins nothing.
    expect(resolveNodePortAddresses(['primary'], 'IPv4', '127.0.0.1').matchAll).toBe(true);
    expect(resolveNodePortAddresses(['primary'], 'IPv6', '::1').matchAll).toBe(true);
  });
});

describe('listLocalAddresses', () => {
  it('reads ip -j addr output', async () => {
    const runner: CommandRunner = {
      run: (_cmd, args) =>
        Promise.resolve({
          code: 0,
          stderr: '',
          stdout: JSON.stringify([{ addr_info: [{ family: 'inet', local: '127.0.0.1' }] }, { addr_info: [{ family: 'inet', local: '10.0.0.2' }] }]),
          args,
        }),
    };
    expect(await listLocalAddresses(runner, 'IPv4')).toEqual(['127.0.0.1', '10.0.0.2']);
  });
});

describe('currentNodePortIPs', () => {
  const selection = resolveNodePortAddresses(['192.168.0.0/16'], 'IPv4');
  const answering = (result: { code: number; stdout?: string; stderr?: string }): CommandRunner => ({
    run: () => Promise.resolve({ stdout: '', stderr: '', ...result }),
  });
  const errors: unknown[] = [];
  const logger: Logger = { debug() {}, info() {}, warn() {}, error: (o) => void errors.push(o), child: () => logger };

  it('selects and sorts the local addresses', async () => {
    const stdout = JSON.stringify([{ addr_info: ['192.168.9.9', '10.0.0.1', '192.168.0.2'].map((local) => ({ local })) }]);
    expect(await currentNodePortIPs(answering({ code: 0, stdout }), 'IPv4', selection, undefined, logger)).toEqual(['192.168.0.2', '192.168.9.9']);
  });

  it('keeps the previous list when listing fails, and fails without one', async () => {
    const failing = answering({ code: 1, stderr: 'boom' });
    expect(await currentNodePortIPs(failing, 'IPv4', selection, ['192.168.0.2'], logger)).toEqual(['192.168.0.2']);
    expect(errors).toHaveLength(1);
    await expect(currentNodePortIPs(failing, 'IPv4', selection, undefined, logger)).rejects.toThrow(/boom/);
  });
});
