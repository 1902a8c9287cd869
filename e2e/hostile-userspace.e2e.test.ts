// The userspace proxy under a flood, on a real kernel: the proxy runs in the sandbox's node
// namespace with a small RLIMIT_NOFILE (its connection limits derive from it), a pod floods one
// service with TCP connections, an outside client floods it with UDP from many source addresses,
// and well-behaved clients must still be served while the proxy's descriptors stay bounded.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, endpointSlice, node, removeLeftoverSandboxes, service, type Sandbox } from '@kube-proxy-ts/testing';
import { ProxyProcess, userspaceUnsupportedReason } from './userspace-proxy.js';

const unsupported = userspaceUnsupportedReason(['prlimit', 'ss']);
if (unsupported) console.log(`hostile userspace e2e skipped: ${unsupported}`);

/** The proxy's RLIMIT_NOFILE: after a reserve of 128, 96 TCP connections (48 per service port), 192 UDP sessions (96 per port). */
const FILE_LIMIT = 512;
const TCP_PER_SERVICE_PORT = 48;
const UDP_PER_SERVICE_PORT = 96;
const TCP_FLOOD = 200;
/** UDP flood sources: 40 extra addresses of the outside client, 10 ports each. */
const FLOOD_ADDRESSES = Array.from({ length: 40 }, (_, i) => `192.168.50.${100 + i}`);
const PORTS_PER_ADDRESS = 10;

const VIP = { flood: '10.96.0.20', calm: '10.96.0.21' };
const NS = 'e2e';

// Opens `count` connections (20 at a time) and holds those the proxy keeps; reports how they fared.
const TCP_FLOOD_CLIENT = `
const net = require('node:net');
const [host, port, count] = process.argv.slice(1);
const held = new Set(); let reset = 0, failed = 0;
const open = () => new Promise((resolve) => {
  const s = net.connect(Number(port), host);
  s.on('error', (e) => { if (e.code === 'ECONNRESET') reset++; else failed++; });
  s.on('connect', () => { held.add(s); resolve(); });
  s.on('close', () => { held.delete(s); resolve(); });
});
(async () => {
  for (let i = 0; i < Number(count); i += 20) await Promise.all(Array.from({ length: Math.min(20, Number(count) - i) }, open));
  setTimeout(() => process.stdout.write(JSON.stringify({ held: held.size, reset, failed }) + '\\n'), 1000);
})();
`;

// One datagram from every source (address x port); reports how many were answered.
const UDP_FLOOD_CLIENT = `
const dgram = require('node:dgram');
const [host, port, addresses, perAddress] = process.argv.slice(1);
let sent = 0, replies = 0;
const sockets = [];
for (const address of addresses.split(',')) {
  for (let i = 0; i < Number(perAddress); i++) {
    const s = dgram.createSocket('udp4');
    s.on('message', () => replies++);
    s.on('error', () => {});
    s.bind(0, address, () => s.send('flood', Number(port), host, () => sent++));
    sockets.push(s);
  }
}
setTimeout(() => { process.stdout.write(JSON.stringify({ sent, replies }) + '\\n'); for (const s of sockets) s.close(); }, 2000);
`;

// One connection that sends a line every 100 ms and counts the echoes; says "connected" (or
// "refused" when reset before that), and reports when told (stdin).
const STEADY_CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
let sent = 0, received = 0, error, connected = false;
const s = net.connect(Number(port), host);
s.on('error', (e) => { if (!error && !connected) process.stdout.write('refused\\n'); error = String(e); });
s.on('data', (d) => (received += d.toString().split('\\n').filter(Boolean).length));
s.on('connect', () => { connected = true; process.stdout.write('connected\\n'); setInterval(() => { sent++; s.write('ping\\n'); }, 100); });
process.stdin.on('data', () => { process.stdout.write(JSON.stringify({ sent, received, error }) + '\\n'); process.exit(0); });
`;

const ECHO_SERVER = `
const net = require('node:net');
const port = Number(process.argv[1]);
net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); })
  .listen(port, '0.0.0.0', () => process.stdout.write('ready\\n'));
`;
const ECHO_PORT = 9000;

describe.skipIf(unsupported !== undefined)('userspace proxy under a flood', () => {
  let sb: Sandbox;
  let proxy: ProxyProcess;
  const processes: ChildProcess[] = [];

  function startIn(netns: string, script: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.on('error', () => undefined);
    processes.push(child);
    return child;
  }

  function nextLine(child: ChildProcess, timeoutMs = 20_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no output in time')), timeoutMs);
      createInterface({ input: child.stdout! }).once('line', (line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  /** Whether a new connection to host:ECHO_PORT is relayed (its lines come back) for 500 ms. */
  async function echoServed(host: string): Promise<boolean> {
    const client = startIn(sb.netns('client'), STEADY_CLIENT, [host, String(ECHO_PORT)]);
    const lines = createInterface({ input: client.stdout! });
    let stderr = '';
    client.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const next = () =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the client said nothing in time: ${stderr}`)), 10_000);
        lines.once('line', (line) => {
          clearTimeout(timer);
          resolve(line);
        });
      });
    try {
      if ((await next()) !== 'connected') return false;
      await new Promise((r) => setTimeout(r, 500));
      const reply = next();
      client.stdin!.write('report\n');
      const report = JSON.parse(await reply) as { received: number; error?: string };
      return report.error === undefined && report.received > 0;
    } finally {
      client.kill('SIGKILL');
    }
  }

  /** Open descriptors of the proxy process. */
  const proxyDescriptors = () => readdirSync(`/proc/${proxy.pid}/fd`).length;

  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const { text } = (await proxy.request({ op: 'metrics' })) as { text: string };
    const line = text
      .split('\n')
      .find((l) => l.startsWith(`kubeproxy_userspace_${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  beforeAll(async () => {
    await removeLeftoverSandboxes('hostile');
    sb = await createSandbox({ tag: 'hostile', pods: 1, ports: [8080] });
    const pod = sb.pods[0]!;
    const echo = startIn(pod.netns, ECHO_SERVER, [String(ECHO_PORT)]);
    expect(await nextLine(echo)).toBe('ready');
    for (const address of FLOOD_ADDRESSES) {
      await sb.execOk('external', ['ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    }

    proxy = new ProxyProcess(sb.netns('node'), { fileLimit: FILE_LIMIT });
    await proxy.request({
      op: 'start',
      // Sessions outlive the test's flood, so the descriptors they hold can be counted.
      config: { bindAddress: '0.0.0.0', udpIdleTimeout: 30_000 },
      node: node('node1', { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }),
      options: { raiseFileLimit: false },
    });
    expect(readFileSync(`/proc/${proxy.pid}/comm`, 'utf8').trim()).toBe('node');
    const ports = [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const },
      { name: 'dns', port: 53, targetPort: 8080, protocol: 'UDP' as const, nodePort: 30053 },
      { name: 'echo', port: ECHO_PORT, protocol: 'TCP' as const },
    ];
    const endpoints = (svc: string) =>
      endpointSlice(NS, svc, `${svc}-1`, {
        endpoints: [pod.ip],
        ports: [
          { name: 'http', port: 8080, protocol: 'TCP' },
          { name: 'dns', port: 8080, protocol: 'UDP' },
          { name: 'echo', port: ECHO_PORT, protocol: 'TCP' },
        ],
      });
    await proxy.request({
      op: 'apply',
      services: [
        service(NS, 'flood', { type: 'NodePort', clusterIP: VIP.flood, ports }),
        service(NS, 'calm', { clusterIP: VIP.calm, ports: ports.map(({ nodePort: _, ...p }) => p) }),
      ],
      slices: [endpoints('flood'), endpoints('calm')],
    });
  });

  afterAll(async () => {
    for (const p of processes) p.kill('SIGKILL');
    await proxy?.close();
    await sb?.destroy();
  });

  it('keeps serving well-behaved clients through a TCP and UDP flood, with its descriptors bounded', async () => {
    expect(await sb.http('client', VIP.flood, 80)).toBe('pod1');
    const baseline = proxyDescriptors();

    // A connection established before the flood, on the port about to be flooded.
    const steady = startIn(sb.netns('client'), STEADY_CLIENT, [VIP.flood, String(ECHO_PORT)]);
    expect(await nextLine(steady)).toBe('connected');

    const tcpFlood = startIn(sb.netns('client'), TCP_FLOOD_CLIENT, [VIP.flood, String(ECHO_PORT), String(TCP_FLOOD)]);
    const udpFlood = startIn(sb.netns('external'), UDP_FLOOD_CLIENT, [sb.node.ip, '30053', FLOOD_ADDRESSES.join(','), String(PORTS_PER_ADDRESS)]);
    const [tcp, udp] = await Promise.all([nextLine(tcpFlood), nextLine(udpFlood)]).then((lines) => lines.map((l) => JSON.parse(l)));

    // The steady connection holds one of the flooded port's slots; the rest of the flood is reset at once.
    expect(tcp).toEqual({ held: TCP_PER_SERVICE_PORT - 1, reset: TCP_FLOOD - (TCP_PER_SERVICE_PORT - 1), failed: 0 });
    expect(udp.sent).toBe(FLOOD_ADDRESSES.length * PORTS_PER_ADDRESS);
    expect(udp.replies).toBe(UDP_PER_SERVICE_PORT);
    expect(await metric('connections_refused_total', { service_port: 'e2e/flood:echo/TCP', reason: 'service_port_limit' })).toBe(
      TCP_FLOOD - (TCP_PER_SERVICE_PORT - 1),
    );
    // Datagrams of a burst can overflow the listener's receive buffer before the proxy sees them:
    // every one it saw beyond the bound was refused.
    const udpRefused = await metric('connections_refused_total', { service_port: 'e2e/flood:dns/UDP', reason: 'service_port_limit' });
    expect(udpRefused).toBeGreaterThanOrEqual(100);
    expect(udpRefused).toBeLessThanOrEqual(udp.sent - UDP_PER_SERVICE_PORT);

    // Two descriptors per held connection, one per UDP session, a few for the probes below.
    const bound = baseline + 2 * TCP_PER_SERVICE_PORT + UDP_PER_SERVICE_PORT + 8;
    expect(proxyDescriptors()).toBeLessThanOrEqual(bound);

    // Other service ports are served, TCP and UDP, from the pod and from outside.
    expect(await sb.http('client', VIP.calm, 80)).toBe('pod1');
    expect(await sb.udp('client', VIP.calm, 53)).toBe('pod1');
    expect(proxyDescriptors()).toBeLessThanOrEqual(bound);

    // While the flood holds its connections, a new client of the flooded port is turned away.
    expect(await echoServed(VIP.flood)).toBe(false);

    // The established connection kept flowing all along.
    steady.stdin!.write('report\n');
    const report = JSON.parse(await nextLine(steady)) as { sent: number; received: number; error?: string };
    expect(report.error).toBeUndefined();
    expect(report.sent).toBeGreaterThan(10);
    expect(report.received).toBeGreaterThanOrEqual(report.sent - 1);

    // Once the flood lets go, the flooded port serves new clients again.
    tcpFlood.kill('SIGKILL');
    const deadline = Date.now() + 10_000;
    let served = await echoServed(VIP.flood);
    while (!served && Date.now() < deadline) served = await echoServed(VIP.flood);
    expect(served).toBe(true);
  });

  it('turns TCP keepalive on at 15 s for both sides of a relay', async () => {
    const steady = startIn(sb.netns('client'), STEADY_CLIENT, [VIP.calm, String(ECHO_PORT)]);
    expect(await nextLine(steady)).toBe('connected');
    // Only the proxy holds TCP connections in the node namespace: every one of them, towards the
    // pod and towards the client, has its keepalive timer running, at most 15 s.
    const lines = (await sb.execOk('node', ['ss', '-tnoH', 'state', 'established'])).split('\n').filter(Boolean);
    expect(lines.some((l) => l.includes(`${sb.pods[0]!.ip}:${ECHO_PORT}`))).toBe(true);
    expect(lines.some((l) => l.includes(`${sb.client.ip}:`))).toBe(true);
    for (const line of lines) {
      const timer = /timer:\(keepalive,(\d+(?:\.\d+)?)(ms|sec|min)/.exec(line);
      expect(timer, line).not.toBeNull();
      const seconds = Number(timer![1]) * ({ ms: 0.001, sec: 1, min: 60 } as Record<string, number>)[timer![2]!]!;
      expect(seconds, line).toBeLessThanOrEqual(15);
    }
    steady.kill('SIGKILL');
  });
});
