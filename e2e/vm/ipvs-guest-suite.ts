// The IPVS end-to-end scenarios, run inside the test VM (a kernel with IPVS) by
// ipvs.e2e.test.ts. Everything happens in network namespaces of a sandbox. Each scenario prints
// one `KPTS-RESULT PASS|FAIL <name>` line for the host; the exit code is 0 only if all pass.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { emptyChangeSet, type CommandRunner, type ProxyConfig, type ProxyState } from '@kube-proxy-ts/core';
import createIpvsBackend from '@kube-proxy-ts/backend-ipvs';
import { createSandbox, endpointSlice, proxyConfig, service, testContext, type Sandbox } from '@kube-proxy-ts/testing';
import { proxyState } from '../../packages/backend-ipvs/src/test-support/state.js';
// Started here rather than by the sandbox: node starts slowly under emulation, past the sandbox's ready timeout.
import { startEchoServer, type EchoServer } from '../../packages/testing/src/netns/servers.js';
import { IPVS_SCENARIOS as N } from './ipvs-scenarios.js';

console.log(`guest suite started (node ${process.version})`);

const results: { name: string; ok: boolean; detail: string }[] = [];

async function scenario(name: string, fn: () => Promise<void>): Promise<void> {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, detail: '' });
    console.log(`KPTS-RESULT PASS ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    results.push({ name, ok: false, detail });
    console.log(`KPTS-RESULT FAIL ${name} :: ${detail.replace(/\n/g, ' | ')}`);
  }
}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

const sorted = (xs: Iterable<string>) => [...xs].sort();
const same = (a: Iterable<string>, b: Iterable<string>) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const WEB = '10.96.0.10';
const NODE_PORT_VIP = '10.96.0.11';
const EXT_VIP = '10.96.0.12';
const EXTERNAL_IP = '192.168.99.11';
const STICKY = '10.96.0.13';
const EMPTY = '10.96.0.14';
const DRAIN = '10.96.0.15';
const FOREIGN = '10.99.0.1';

const svc = (name: string, clusterIP: string, extra: Exclude<Parameters<typeof service>[2], (...a: never[]) => unknown> = {}, mutate?: Parameters<typeof service>[3]) =>
  service('e2e', name, { clusterIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...extra }, mutate);
const slice = (name: string, ips: string[], ports = [{ name: 'http', port: 8080 }]) =>
  endpointSlice('e2e', name, { name: `${name}-1`, endpoints: ips, ports });

function state(sb: Sandbox, phase: 1 | 2): ProxyState {
  const [p1, p2, p3] = sb.pods.map((p) => p.ip) as [string, string, string];
  const webPods = phase === 1 ? [p1, p2, p3] : [p1, p2];
  return proxyState({
    nodeIPs: [sb.node.ip],
    services: [
      service('e2e', 'web', { clusterIP: WEB, ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, targetPort: 8080, protocol: 'UDP' }] }),
      svc('np', NODE_PORT_VIP, { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }),
      svc('ext', EXT_VIP, { externalIPs: [EXTERNAL_IP] }),
      svc('sticky', STICKY, {}, (s) => (s.spec!.sessionAffinity = 'ClientIP')),
      svc('empty', EMPTY),
      svc('drain', DRAIN),
    ],
    slices: [
      slice('web', webPods, [{ name: 'http', port: 8080 }, { name: 'dns', port: 8080, protocol: 'UDP' } as { name: string; port: number }]),
      slice('np', [p1, p2, p3]),
      slice('ext', [p1, p2, p3]),
      slice('sticky', [p1, p2, p3]),
      slice('drain', phase === 1 ? [p1] : [p2]),
    ],
  });
}

async function httpNames(sb: Sandbox, from: string, host: string, port: number, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) names.push(await sb.http(from, host, port, { timeoutMs: 10_000 }));
  return names;
}

/** One UDP datagram with socat (a node client takes seconds to start in the VM); the reply or "". */
async function udpName(sb: Sandbox, from: string, host: string, port: number): Promise<string> {
  const r = await sb.exec(from, ['socat', '-t', '2', '-T', '5', '-', `UDP4:${host}:${port}`], { stdin: 'hello', timeoutMs: 20_000 });
  return r.stdout.trim();
}

/** The real servers of one virtual service, as `ip:port weight` strings. */
async function realServers(sb: Sandbox, vs: string): Promise<string[]> {
  const out = await sb.execOk('node', ['ipvsadm', '-Ln', '-t', vs]);
  return out
    .split('\n')
    .filter((l) => l.startsWith('  -> ') && !l.includes('RemoteAddress'))
    .map((l) => l.slice(5).trim().split(/\s+/))
    .map((f) => `${f[0]} w=${f[2]} active=${f[3]}`);
}

/** A TCP connection from the client namespace that stays open until told to send a request. */
const LONG_CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect(Number(port), host, () => process.stdout.write('connected\\n'));
let body = '';
s.on('data', (d) => (body += d));
s.on('end', () => { process.stdout.write('body=' + body.split('\\r\\n\\r\\n')[1] + '\\n'); s.resetAndDestroy(); setTimeout(() => process.exit(0), 50); });
s.on('error', (e) => { process.stdout.write('error=' + e.message + '\\n'); process.exit(1); });
process.stdin.on('data', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n'));
`;

async function main(): Promise<number> {
  const sb = await createSandbox({ tag: 'ipvsvm', pods: 3, ports: [8080], servers: false });
  const servers: EchoServer[] = [];
  const backend = createIpvsBackend({ ipFamily: 'IPv4', config: proxyConfig({ clusterCIDR: sb.plan.clusterCIDR }) as ProxyConfig });
  const inner = sb.runner('node');
  const timings: string[] = [];
  const runner: CommandRunner = {
    async run(cmd, args, options) {
      const t = Date.now();
      try {
        return await inner.run(cmd, args, options);
      } finally {
        timings.push(`${Date.now() - t} ms ${cmd} ${args.join(' ')}`);
      }
    },
  };
  const ctx = testContext({ runner, node: { name: 'node1', addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] } });
  const sync = async (s: ProxyState) => {
    const r = await backend.sync(s, emptyChangeSet());
    if (!r.ok) throw new Error(`sync failed: ${r.error?.message}`);
  };
  const podNames = sb.pods.map((p) => p.name);
  try {
    const ts = Date.now();
    servers.push(...(await Promise.all(sb.pods.map((p) => startEchoServer(p.netns, p.name, [8080], { readyTimeoutMs: 120_000 })))));
    console.log(`echo servers ready in ${Date.now() - ts} ms`);
    // First runs of the probe tools load their libraries over 9p: do it before any timed probe.
    await sb.exec('client', ['curl', '--version']);
    await sb.exec('client', ['socat', '-V']);
    await sb.execOk('node', ['ipvsadm', '-A', '-t', `${FOREIGN}:80`, '-s', 'wlc']);
    await backend.start(ctx);
    const t0 = Date.now();
    await sync(state(sb, 1));
    console.log(`first sync ${Date.now() - t0} ms: ${timings.splice(0).join('; ')}`);

    await scenario(N.clusterTCP, async () => {
      const names = await httpNames(sb, 'client', WEB, 80, 3);
      check(same(new Set(names), podNames), `got ${names.join(',')}`);
    });
    await scenario(N.clusterUDP, async () => {
      const names: string[] = [];
      for (let i = 0; i < 3; i++) names.push(await udpName(sb, 'client', WEB, 53));
      check(same(new Set(names), podNames), `got ${names.join(',')}`);
    });
    await scenario(N.nodePort, async () => {
      const name = await sb.http('external', sb.node.ip, 30080, { timeoutMs: 10_000 });
      check(podNames.includes(name), `got ${name}`);
    });
    await scenario(N.externalIP, async () => {
      const name = await sb.http('external', EXTERNAL_IP, 80, { timeoutMs: 10_000 });
      check(podNames.includes(name), `got ${name}`);
    });
    await scenario(N.affinity, async () => {
      const names = await httpNames(sb, 'client', STICKY, 80, 4);
      check(new Set(names).size === 1, `got ${names.join(',')}`);
    });
    await scenario(N.noEndpoints, async () => {
      const r = await sb.tryHttp('client', EMPTY, 80, { timeoutMs: 3000 });
      check(!r.ok, `got an answer: ${r.body}`);
    });
    await scenario(N.filter, async () => {
      const r = await sb.tryHttp('client', WEB, 8080, { timeoutMs: 3000 });
      check(!r.ok, `port 8080 on the VIP answered: ${r.body}`);
    });

    // A live connection to pod1 through the drain service, open across the endpoint change.
    const clientNs = sb.netns('client');
    const long = spawn('ip', ['netns', 'exec', clientNs, process.execPath, '-e', LONG_CLIENT, DRAIN, '80'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: long.stdout! })[Symbol.asyncIterator]();
    const connected = await lines.next();
    check(connected.value === 'connected', `long connection: ${String(connected.value)}`);

    const t2 = Date.now();
    await sync(state(sb, 2));
    console.log(`second sync ${Date.now() - t2} ms: ${timings.splice(0).join('; ')}`);

    await scenario(N.removedEndpoint, async () => {
      const names = await httpNames(sb, 'client', WEB, 80, 4);
      check(!names.includes('pod3') && same(new Set(names), ['pod1', 'pod2']), `got ${names.join(',')}`);
    });
    await scenario(N.graceful, async () => {
      const before = await realServers(sb, `${DRAIN}:80`);
      check(before.some((r) => r.startsWith(`${sb.pods[0]!.ip}:8080 w=0 active=1`)), `pod1 not draining: ${before.join('; ')}`);
      check(before.some((r) => r.startsWith(`${sb.pods[1]!.ip}:8080 w=1`)), `pod2 not added: ${before.join('; ')}`);
      const fresh = await sb.http('client', DRAIN, 80, { timeoutMs: 10_000 });
      check(fresh === 'pod2', `a new connection went to ${fresh}`);
      long.stdin!.write('go\n');
      const reply = await Promise.race([lines.next(), sleep(20_000).then(() => ({ value: 'no reply in 20 s' }))]);
      check(reply.value === 'body=pod1', `live connection answered ${String(reply.value)}`);
      // Once the connection is gone (reset: IPVS keeps it 10 s in CLOSE), a sync deletes the server.
      const deadline = Date.now() + 40_000;
      for (;;) {
        await sleep(5000);
        const ts = Date.now();
        await sync(state(sb, 2));
        console.log(`drain sync ${Date.now() - ts} ms`);
        const now = await realServers(sb, `${DRAIN}:80`);
        if (!now.some((r) => r.startsWith(`${sb.pods[0]!.ip}:`))) break;
        check(Date.now() < deadline, `pod1 still listed after the connection ended: ${now.join('; ')}`);
      }
    });
    long.kill();

    await scenario(N.foreignSurvives, async () => {
      const out = await sb.execOk('node', ['ipvsadm', '-Ln']);
      check(out.includes(`TCP  ${FOREIGN}:80 wlc`), out);
    });
    await scenario(N.cleanup, async () => {
      await backend.cleanup();
      const ipvs = await sb.execOk('node', ['ipvsadm', '-Ln']);
      const services = ipvs.split('\n').filter((l) => /^(TCP|UDP|SCTP) /.test(l));
      check(services.length === 1 && services[0]!.includes(FOREIGN), `virtual services left: ${services.join('; ')}`);
      const sets = (await sb.execOk('node', ['ipset', 'list', '-n'])).split('\n').filter((n) => n.startsWith('KUBE-'));
      check(sets.length === 0, `ipsets left: ${sets.join(',')}`);
      const link = await sb.exec('node', ['ip', 'link', 'show', 'kube-ipvs0']);
      check(link.code !== 0, 'kube-ipvs0 still exists');
      const rules = await sb.execOk('node', ['iptables-save']);
      const ours = rules.split('\n').filter((l) => /KUBE-(SERVICES|POSTROUTING|MARK-MASQ|NODE-PORT|LOAD-BALANCER|FORWARD|PROXY-FIREWALL|SOURCE-RANGES|IPVS)/.test(l));
      check(ours.length === 0, `iptables left: ${ours.join(' | ')}`);
    });
  } catch (err) {
    console.log(`KPTS-RESULT FAIL setup :: ${err instanceof Error ? err.stack : String(err)}`);
    results.push({ name: 'setup', ok: false, detail: String(err) });
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await sb.destroy();
  }
  const failed = results.filter((r) => !r.ok).length;
  console.log(`KPTS-SUMMARY passed=${results.length - failed} failed=${failed}`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`KPTS-RESULT FAIL setup :: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  },
);
