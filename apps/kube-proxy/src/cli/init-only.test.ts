import { createRecordingRunner, testContext } from '@kube-proxy-ts/testing';
import { describe, expect, it } from 'vitest';
import { defaultKubeProxyConfig } from '../config/v1alpha1.js';
import { loadBackendFactory } from '../daemon/backend-loader.js';
import { runInitOnly } from './init-only.js';

const logger = testContext().logger;

function config(patch: (c: ReturnType<typeof defaultKubeProxyConfig>) => void = () => {}) {
  const c = defaultKubeProxyConfig();
  patch(c);
  return c;
}

async function initOnly(c: ReturnType<typeof config>, runner = createRecordingRunner()) {
  const backend = (await loadBackendFactory(c.mode))({ ipFamily: 'IPv4', config: c });
  const problems = await runInitOnly(c, { runner, logger, backend, cpus: 4, inHostNetworkNamespace: true, exists: () => true });
  const written = runner.callsTo('sysctl').filter((call) => call.args[0] === '-w').map((call) => call.args[1]);
  // Whatever it ran besides reading tools' versions and sysctls.
  const others = runner.calls.filter((call) => call.args[0] !== '--version' && call.command !== 'sysctl').map((call) => [call.command, ...call.args].join(' '));
  return { problems, written, others };
}

describe('--init-only', () => {
  it('iptables: applies the conntrack settings and route_localnet, and programs no rules', async () => {
    const { problems, written, others } = await initOnly(config());
    expect(problems).toEqual([]);
    expect(written).toEqual([
      'net.netfilter.nf_conntrack_max=131072',
      'net.netfilter.nf_conntrack_tcp_timeout_established=86400',
      'net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600',
      'net.ipv4.conf.all.route_localnet=1',
    ]);
    // Only the conntrack hash size is read and raised; no iptables-restore, no iptables -A.
    expect(others.every((o) => /^(cat|tee) \/sys\/module\/nf_conntrack\/parameters\/hashsize$/.test(o))).toBe(true);
  });

  it('iptables: no route_localnet when localhost NodePorts are off or nodePortAddresses exclude loopback', async () => {
    for (const c of [config((c) => (c.iptables.localhostNodePorts = false)), config((c) => (c.nodePortAddresses = ['10.0.0.0/8']))]) {
      const { written } = await initOnly(c);
      expect(written).not.toContain('net.ipv4.conf.all.route_localnet=1');
    }
  });

  it('ipvs: the IPVS sysctls, strict ARP and the IPVS timeouts', async () => {
    const c = config((c) => {
      c.mode = 'ipvs';
      c.ipvs.strictARP = true;
      c.ipvs.tcpTimeout = 900_000;
      c.conntrack.maxPerCore = 0;
      c.conntrack.tcpEstablishedTimeout = 0;
      c.conntrack.tcpCloseWaitTimeout = 0;
    });
    const { problems, written, others } = await initOnly(c);
    expect(problems).toEqual([]);
    expect(written).toEqual([
      'net.ipv4.vs.conntrack=1',
      'net.ipv4.vs.expire_nodest_conn=1',
      'net.ipv4.vs.expire_quiescent_template=1',
      'net.ipv4.ip_forward=1',
      'net.ipv4.conf.all.arp_ignore=1',
      'net.ipv4.conf.all.arp_announce=2',
    ]);
    expect(others).toEqual(['ipvsadm --set 900 0 0']);
  });

  it('nftables: conntrack settings only', async () => {
    const { problems, written, others } = await initOnly(config((c) => ((c.mode = 'nftables'), (c.conntrack.maxPerCore = 0))));
    expect(problems).toEqual([]);
    expect(written).toEqual(['net.netfilter.nf_conntrack_tcp_timeout_established=86400', 'net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600']);
    expect(others).toEqual([]);
  });

  it('sets nothing when a value is already in place', async () => {
    const runner = createRecordingRunner().on('sysctl', () => ({ stdout: '1\n' }), (args) => args[0] === '-n' && args[1] === 'net.ipv4.conf.all.route_localnet');
    const { written } = await initOnly(config((c) => (c.conntrack.maxPerCore = 0)), runner);
    expect(written).not.toContain('net.ipv4.conf.all.route_localnet=1');
  });

  it('fails with the reason when a sysctl is refused or the mode cannot run', async () => {
    const refusing = createRecordingRunner().on('sysctl', () => ({ code: 255, stderr: 'permission denied on key "net.ipv4.conf.all.route_localnet"' }), (args) => args[0] === '-w' && (args[1] ?? '').startsWith('net.ipv4.conf.all.route_localnet'));
    expect((await initOnly(config(), refusing)).problems).toEqual(['cannot set net.ipv4.conf.all.route_localnet=1']);

    const noNft = createRecordingRunner().on('nft', () => Promise.reject(new Error('spawn nft ENOENT')));
    const r = await initOnly(config((c) => (c.mode = 'nftables')), noNft);
    expect(r.problems).toEqual(['proxy mode nftables cannot run on this machine: nft is not installed or not on PATH (the nftables mode uses it: it writes the nftables ruleset)']);
    expect(r.written).toEqual([]);
  });
});
