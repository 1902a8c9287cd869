import { defaultProxyConfig } from '@kube-proxy-ts/core';
import { createRecordingRunner, testContext } from '@kube-proxy-ts/testing';
import { describe, expect, it } from 'vitest';
import { applyConntrackSettings, conntrackMax } from './conntrack.js';

// A fake /proc/sys and /sys/module behind the recording runner.
function fakeKernel(values: Record<string, number>, readOnly: string[] = []) {
  const runner = createRecordingRunner();
  runner.on('sysctl', (args) => {
    if (args[0] === '-n') {
      const v = values[args[1] as string];
      return v === undefined ? { code: 255, stderr: 'No such file or directory' } : { stdout: `${v}\n` };
    }
    const [name, value] = (args[1] as string).split('=') as [string, string];
    if (readOnly.includes(name)) return { code: 255, stderr: `setting key "${name}": Invalid argument` };
    values[name] = Number(value);
    return { stdout: `${name} = ${value}\n` };
  });
  runner.on('cat', () => ({ stdout: `${values.hashsize}\n` }));
  runner.on('tee', (_args, stdin) => ((values.hashsize = Number(stdin)), {}));
  return { runner, values };
}

const logger = testContext().logger;
const defaults = defaultProxyConfig().conntrack;

describe('conntrack settings', () => {
  it('computes upstream max: maxPerCore x cores, at least min, 0 when maxPerCore is 0', () => {
    expect(conntrackMax(defaults, 2)).toBe(131072);
    expect(conntrackMax(defaults, 8)).toBe(262144);
    expect(conntrackMax({ ...defaults, maxPerCore: 0 }, 8)).toBe(0);
  });

  it('raises hashsize and max from the host namespace, and sets the timeouts that differ', async () => {
    const { runner, values } = fakeKernel({
      hashsize: 16384,
      'net.netfilter.nf_conntrack_max': 65536,
      'net.netfilter.nf_conntrack_tcp_timeout_established': 432000,
      'net.netfilter.nf_conntrack_tcp_timeout_close_wait': 3600,
    });
    await applyConntrackSettings({ ...defaults, maxPerCore: 32768 }, { runner, logger, cpus: 8, inHostNetworkNamespace: true });
    expect(values).toMatchObject({
      hashsize: 65536,
      'net.netfilter.nf_conntrack_max': 262144,
      'net.netfilter.nf_conntrack_tcp_timeout_established': 86400,
      'net.netfilter.nf_conntrack_tcp_timeout_close_wait': 3600,
    });
    // close_wait already had the wanted value: read, not written.
    expect(runner.callsTo('sysctl').filter((c) => c.args[0] === '-w').map((c) => c.args[1])).toEqual([
      'net.netfilter.nf_conntrack_max=262144',
      'net.netfilter.nf_conntrack_tcp_timeout_established=86400',
    ]);
  });

  it('never lowers max or hashsize', async () => {
    const { runner, values } = fakeKernel({ hashsize: 262144, 'net.netfilter.nf_conntrack_max': 1048576 });
    await applyConntrackSettings({ ...defaults, tcpEstablishedTimeout: 0, tcpCloseWaitTimeout: 0 }, { runner, logger, cpus: 2, inHostNetworkNamespace: true });
    expect(values).toMatchObject({ hashsize: 262144, 'net.netfilter.nf_conntrack_max': 1048576 });
    expect(runner.callsTo('tee')).toHaveLength(0);
  });

  it('leaves the global table size alone outside the host namespace but still sets per-namespace timeouts', async () => {
    const { runner, values } = fakeKernel({ hashsize: 1024, 'net.netfilter.nf_conntrack_max': 4096, 'net.netfilter.nf_conntrack_tcp_be_liberal': 0 });
    await applyConntrackSettings({ ...defaults, tcpEstablishedTimeout: 0, tcpCloseWaitTimeout: 0, tcpBeLiberal: true }, { runner, logger, cpus: 2, inHostNetworkNamespace: false });
    expect(runner.callsTo('tee')).toHaveLength(0);
    expect(runner.callsTo('cat')).toHaveLength(0);
    expect(values).toMatchObject({ hashsize: 1024, 'net.netfilter.nf_conntrack_max': 4096, 'net.netfilter.nf_conntrack_tcp_be_liberal': 1 });
  });

  it('logs and goes on when the kernel refuses a value', async () => {
    const { runner, values } = fakeKernel({ hashsize: 65536, 'net.netfilter.nf_conntrack_max': 1, 'net.netfilter.nf_conntrack_tcp_timeout_established': 5 }, ['net.netfilter.nf_conntrack_max']);
    await expect(applyConntrackSettings(defaults, { runner, logger, cpus: 2, inHostNetworkNamespace: true })).resolves.toBeUndefined();
    expect(values['net.netfilter.nf_conntrack_tcp_timeout_established']).toBe(86400);
  });
});
