// The userspace backend on a real kernel: the proxy runs as a process inside the sandbox's node
// namespace (its listeners and nat rules live there), clients and pods in their own namespaces.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Explanation } from '@kube-proxy-ts/core';
import { createSandbox, endpointSlice, node, service, type Sandbox } from '@kube-proxy-ts/testing';
import { ProxyProcess, userspaceUnsupportedReason } from './userspace-proxy.js';

const unsupported = userspaceUnsupportedReason();
if (unsupported) console.log(`userspace e2e skipped: ${unsupported}`);

// A TCP echo server answering "<pod>:<data>", and a client that keeps one connection busy.
const ECHO_SERVER = `
const net = require('node:net');
const [name, port] = process.argv.slice(1);
net.createServer((s) => { s.on('data', (d) => s.write(name + ':' + d)); s.on('error', () => {}); })
  .listen(Number(port), '0.0.0.0', () => process.stdout.write('ready\\n'));
`;
const LONG_CLIENT = `
const net = require('node:net');
const [host, port, count, everyMs] = process.argv.slice(1);
let sent = 0, received = 0, pod = '';
const s = net.connect(Number(port), host);
const finish = (error) => { process.stdout.write(JSON.stringify({ sent, received, pod, error }) + '\\n'); process.exit(0); };
s.on('error', (e) => finish(String(e)));
s.on('close', () => { if (sent < Number(count)) finish('closed early'); });
s.on('data', (d) => {
  for (const line of d.toString().split('\\n').filter(Boolean)) {
    received++;
    if (!pod) { pod = line.split(':')[0]; process.stdout.write('pod ' + pod + '\\n'); }
  }
  if (received === Number(count)) finish();
});
const tick = () => { if (sent < Number(count)) { s.write('ping' + (++sent) + '\\n'); setTimeout(tick, Number(everyMs)); } };
s.on('connect', tick);
`;

const NS = 'e2e';
const VIP = { web: '10.96.0.10', sticky: '10.96.0.11', empty: '10.96.0.12', flaky: '10.96.0.13', echo: '10.96.0.14' };
const ECHO_PORT = 9000;

describe.skipIf(unsupported !== undefined)('userspace backend in network namespaces', () => {
  let sb: Sandbox;
  let proxy: ProxyProcess;
  const processes: ChildProcess[] = [];
  const services = new Map<string, unknown>();
  const slices = new Map<string, unknown>();

  const podIP = (name: string) => sb.pods.find((p) => p.name === name)!.ip;
  const apply = () => proxy.request({ op: 'apply', services: [...services.values()], slices: [...slices.values()] });
  const setSlice = (svc: string, pods: string[], port = 8080, protocols: Array<'TCP' | 'UDP'> = ['TCP']) =>
    slices.set(
      svc,
      endpointSlice(NS, svc, `${svc}-1`, {
        endpoints: pods.map((p) => podIP(p)),
        ports: protocols.map((protocol) => ({ name: protocol === 'TCP' ? 'http' : 'dns', port, protocol })),
      }),
    );

  function startIn(netns: string, script: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    processes.push(child);
    return child;
  }

  function firstLine(child: ChildProcess, match: (line: string) => boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no output in time')), 10_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!match(line)) return;
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  beforeAll(async () => {
    sb = await createSandbox({ tag: 'usp', pods: 3, ports: [8080] });
    for (const pod of ['pod1', 'pod2']) {
      await firstLine(startIn(sb.netns(pod), ECHO_SERVER, [pod, String(ECHO_PORT)]), (l) => l === 'ready');
    }
    await sb.stopServer('pod3'); // a dead endpoint: its address refuses connections
    proxy = new ProxyProcess(sb.netns('node'));
    await proxy.request({
      op: 'start',
      config: { bindAddress: '0.0.0.0', udpIdleTimeout: 1000 },
      node: node('node1', { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }),
    });
    services.set(
      'web',
      service(NS, 'web', {
        type: 'NodePort',
        clusterIP: VIP.web,
        ports: [
          { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 },
          { name: 'dns', port: 53, targetPort: 8080, protocol: 'UDP', nodePort: 30053 },
        ],
      }),
    );
    setSlice('web', ['pod1', 'pod2'], 8080, ['TCP', 'UDP']);
    services.set('sticky', service(NS, 'sticky', { clusterIP: VIP.sticky, sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    setSlice('sticky', ['pod1', 'pod2']);
    services.set('empty', service(NS, 'empty', { clusterIP: VIP.empty, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    services.set('flaky', service(NS, 'flaky', { clusterIP: VIP.flaky, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    setSlice('flaky', ['pod3', 'pod1']);
    services.set('echo', service(NS, 'echo', { clusterIP: VIP.echo, ports: [{ name: 'http', port: ECHO_PORT }] }));
    setSlice('echo', ['pod1', 'pod2'], ECHO_PORT);
    await apply();
  });

  /** What the proxy's explain, reading its running listeners and the kernel's portal rules, says a new connection reaches. */
  const explained = async (src: string, dst: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP') => {
    const { explanation } = (await proxy.request({ op: 'explain', packet: { src, dst, port, protocol } })) as { explanation: Explanation };
    const pods = explanation.paths.filter((p) => !p.affinity && p.probability !== 0).map((p) => (p.endpoint ? (sb.pods.find((q) => p.endpoint!.startsWith(`${q.ip}:`))?.name ?? p.endpoint) : p.verdict));
    return [...new Set(pods)].sort();
  };

  afterAll(async () => {
    await proxy?.close();
    for (const p of processes) p.kill('SIGKILL');
    await sb?.destroy();
  });

  it('balances ClusterIP TCP round robin from a pod, and serves the node itself', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await sb.http('client', VIP.web, 80));
    expect(new Set(answers)).toEqual(new Set(['pod1', 'pod2']));
    expect(['pod1', 'pod2']).toContain(await sb.http('node', VIP.web, 80));
    expect(await explained(sb.client.ip, VIP.web, 80)).toEqual(['pod1', 'pod2']);
  });

  it('relays ClusterIP UDP and its replies', async () => {
    expect(['pod1', 'pod2']).toContain(await sb.udp('client', VIP.web, 53));
    expect(['pod1', 'pod2']).toContain(await sb.udp('node', VIP.web, 53));
  });

  it('serves NodePorts to a client outside the cluster, TCP and UDP', async () => {
    expect(['pod1', 'pod2']).toContain(await sb.http('external', sb.node.ip, 30080));
    expect(['pod1', 'pod2']).toContain(await sb.udp('external', sb.node.ip, 30053));
    expect(await explained(sb.external.ip, sb.node.ip, 30080)).toEqual(['pod1', 'pod2']);
    expect(await explained(sb.external.ip, sb.node.ip, 30053, 'UDP')).toEqual(['pod1', 'pod2']);
  });

  it('keeps a client on one endpoint with ClientIP affinity', async () => {
    const answers = new Set<string>();
    for (let i = 0; i < 5; i++) answers.add(await sb.http('client', VIP.sticky, 80));
    expect(answers.size).toBe(1);
  });

  it('refuses connections to a service without endpoints', async () => {
    const r = await sb.tryHttp('client', VIP.empty, 80, { timeoutMs: 2000 });
    expect(r.ok).toBe(false);
    // curl's exit 7 right away ("Couldn't connect" / "Connection refused"): a refusal, not a timeout.
    expect(r.error).toMatch(/curl: \(7\)|refused/i);
  });

  it('skips a dead endpoint: every request is served', async () => {
    for (let i = 0; i < 4; i++) expect(await sb.http('client', VIP.flaky, 80)).toBe('pod1');
  });

  it('keeps a live connection when its endpoint is removed; new connections avoid that endpoint', async () => {
    const long = startIn(sb.netns('client'), LONG_CLIENT, [VIP.echo, String(ECHO_PORT), '20', '100']);
    const lines = createInterface({ input: long.stdout! });
    const first = new Promise<string>((resolve) => lines.once('line', resolve));
    const result = new Promise<string>((resolve) => lines.on('line', (l) => l.startsWith('{') && resolve(l)));
    const pod = (await first).replace('pod ', '');
    expect(['pod1', 'pod2']).toContain(pod);
    const other = pod === 'pod1' ? 'pod2' : 'pod1';
    setSlice('echo', [other], ECHO_PORT);
    await apply();
    const short = startIn(sb.netns('client'), LONG_CLIENT, [VIP.echo, String(ECHO_PORT), '1', '10']);
    const shortResult = JSON.parse(await firstLine(short, (l) => l.startsWith('{'))) as { pod: string };
    expect(shortResult.pod).toBe(other);
    const outcome = JSON.parse(await result) as { sent: number; received: number; pod: string; error?: string };
    expect(outcome).toEqual({ sent: 20, received: 20, pod });
  });

  it('cleanup() removes the chains and the jumps from the node', async () => {
    await proxy.request({ op: 'cleanup' });
    const nat = await sb.execOk('node', ['iptables-save', '-t', 'nat'], { timeoutMs: 15_000 });
    expect(nat).not.toMatch(/KUBE-PORTALS|KUBE-NODEPORT/);
    const r = await sb.tryHttp('client', VIP.web, 80, { timeoutMs: 1000 });
    expect(r.ok).toBe(false);
  });
});
