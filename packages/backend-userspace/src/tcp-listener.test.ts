import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createTestLogger } from '@kube-proxy-ts/testing';
import { RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';
import { ConnectionBudget, ListenerBudget } from './limits.js';
import { ListenerMetrics } from './metrics.js';
import { TcpServiceListener, type TcpListenerOptions } from './tcp-listener.js';
import {
  connectTcp,
  deadPort,
  echoServer,
  endpointAt,
  eventually,
  fetchTcp,
  metricValue,
  nameServer,
  nextData,
  tcpServer,
  type TestServer,
} from './sockets.test-support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function server(s: Promise<TestServer>): Promise<TestServer> {
  const srv = await s;
  cleanups.push(() => srv.close());
  return srv;
}

interface ProxyOptions extends Pick<TcpListenerOptions, 'dialTimeouts' | 'idleTimeoutMs' | 'halfClosedIdleTimeoutMs'> {
  /** Connections this service port may hold; default 1000. */
  perServicePort?: number;
  /** The total shared with other listeners; default a budget of its own for 1000. */
  total?: ConnectionBudget;
}

async function proxyTo(endpoints: BalancerEndpoint[], options: ProxyOptions = {}) {
  const { perServicePort = 1000, total = new ConnectionBudget(1000), ...timeouts } = options;
  const registry = new Registry();
  const balancer = new RoundRobinBalancer<BalancerEndpoint>({ now: () => Date.now(), random: () => 0 });
  balancer.setEndpoints(endpoints);
  const metrics = new ListenerMetrics(registry, { servicePort: 'ns/svc:http', protocol: 'TCP', ipFamily: 'IPv4' });
  const budget = new ListenerBudget(perServicePort, total);
  const listener = new TcpServiceListener({
    host: '127.0.0.1',
    balancer,
    metrics,
    logger: createTestLogger(),
    budget,
    ...timeouts,
  });
  const port = await listener.open(0);
  cleanups.push(() => listener.close());
  const metric = (name: string, labels?: Record<string, string>) => metricValue(registry, name, labels);
  return { listener, balancer, budget, port, metric };
}

describe('TcpServiceListener on 127.0.0.1', () => {
  it('relays to the endpoints in round-robin order and counts bytes and connections', async () => {
    const a = await server(nameServer('a'));
    const b = await server(nameServer('b'));
    const p = await proxyTo([a.endpoint, b.endpoint]);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await fetchTcp(p.port, 'hi'));
    expect(answers).toEqual(['a', 'b', 'a', 'b']);
    await eventually(() => p.listener.activeConnections === 0);
    p.listener.flushMetrics();
    expect(await p.metric('connections_total')).toBe(4);
    expect(await p.metric('active_connections')).toBe(0);
    expect(await p.metric('bytes_total', { direction: 'to_endpoint' })).toBe(8);
    expect(await p.metric('bytes_total', { direction: 'to_client' })).toBe(4);
  });

  it('skips a dead endpoint: every client is served and the failures are counted', async () => {
    const alive = await server(nameServer('alive'));
    const p = await proxyTo([endpointAt(await deadPort()), alive.endpoint]);
    for (let i = 0; i < 4; i++) expect(await fetchTcp(p.port)).toBe('alive');
    // Round robin meets the dead endpoint first on every connection: one failed attempt each.
    expect(await p.metric('connect_errors_total')).toBe(4);
  });

  it('moves on when an endpoint does not answer within the attempt timeout', async () => {
    const alive = await server(nameServer('alive'));
    // 192.0.2.0/24 (TEST-NET-1) is not routed: the SYN goes nowhere, the attempt times out.
    const p = await proxyTo([{ hostPort: '192.0.2.1:80', ip: '192.0.2.1', port: 80 }, alive.endpoint], { dialTimeouts: [100, 200] });
    const started = Date.now();
    expect(await fetchTcp(p.port)).toBe('alive');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('resets the client when no endpoint answers', async () => {
    const p = await proxyTo([endpointAt(await deadPort())], { dialTimeouts: [50, 50] });
    await expect(fetchTcp(p.port)).rejects.toThrow(/ECONNRESET/);
  });

  it('propagates a half-close: the client\'s FIN reaches the endpoint, which can still answer', async () => {
    const echo = await server(echoServer());
    const p = await proxyTo([echo.endpoint]);
    expect(await fetchTcp(p.port, 'ping')).toBe('pingbye');
  });

  it('propagates a reset from the endpoint to the client and from the client to the endpoint', async () => {
    const resetter = await server(tcpServer((s) => s.once('data', () => s.resetAndDestroy())));
    const p = await proxyTo([resetter.endpoint]);
    const client = await connectTcp(p.port);
    client.write('x');
    const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNRESET');

    let endpointSide: net.Socket | undefined;
    const endpointError = new Promise<string>((resolve) => {
      void server(
        tcpServer((s) => {
          endpointSide = s;
          s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        }),
      ).then((srv) => p.balancer.setEndpoints([srv.endpoint]));
    });
    await eventually(() => p.balancer.list()[0]?.port !== resetter.endpoint.port);
    const c2 = await connectTcp(p.port);
    await eventually(() => endpointSide !== undefined);
    c2.resetAndDestroy();
    expect(await endpointError).toBe('ECONNRESET');
  });

  it('keeps established connections when endpoints change; new ones go to the new set', async () => {
    const echo = await server(echoServer());
    const other = await server(nameServer('other'));
    const p = await proxyTo([echo.endpoint]);
    const live = await connectTcp(p.port);
    live.write('one');
    expect(await nextData(live)).toBe('one');
    p.balancer.setEndpoints([other.endpoint]);
    p.listener.endpointsRemoved(new Set([echo.endpoint.hostPort]));
    expect(await fetchTcp(p.port)).toBe('other');
    live.write('two');
    expect(await nextData(live)).toBe('two');
    live.destroy();
  });

  it('close() ends the listener and every connection', async () => {
    const echo = await server(echoServer());
    const p = await proxyTo([echo.endpoint]);
    const live = await connectTcp(p.port);
    live.on('error', () => undefined);
    live.write('x');
    await nextData(live);
    const closed = new Promise((resolve) => live.once('close', resolve));
    p.listener.close();
    await closed;
    expect(live.destroyed).toBe(true);
    expect(p.listener.serving).toBe(false);
    await expect(fetchTcp(p.port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('applies backpressure: a client that does not read stops the endpoint, nothing piles up in the proxy', async () => {
    const total = 64 * 1024 * 1024;
    let written = 0;
    const chunk = Buffer.alloc(256 * 1024, 7);
    const firehose = await server(
      tcpServer((s) => {
        const pump = () => {
          while (written < total) {
            written += chunk.length;
            if (!s.write(chunk)) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      }),
    );
    const p = await proxyTo([firehose.endpoint]);
    const client = await connectTcp(p.port);
    client.pause();
    await new Promise((r) => setTimeout(r, 400));
    const stalledAt = written;
    expect(stalledAt).toBeLessThan(40 * 1024 * 1024);
    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    await once(client, 'end');
    expect(received).toBe(total);
    client.destroy();
  });

  it('delivers every byte intact when connections reuse read buffers and clients stall', async () => {
    // Distinct random payloads per connection; the clients pause now and then, so writes to
    // them queue while other connections keep reading from their endpoints.
    const payloads = new Map<string, Buffer>();
    const source = await server(
      tcpServer((s) => {
        s.once('data', (d: Buffer) => {
          const body = payloads.get(d.toString().trim())!;
          for (let off = 0; off < body.length; off += 100_003) s.write(body.subarray(off, off + 100_003));
          s.end();
        });
      }),
    );
    const p = await proxyTo([source.endpoint]);
    const fetchStalling = async (name: string) => {
      const body = randomBytes(12 * 1024 * 1024);
      payloads.set(name, body);
      const client = await connectTcp(p.port);
      const hash = createHash('sha256');
      let n = 0;
      client.on('data', (d: Buffer) => {
        hash.update(d);
        if (++n % 7 === 0) {
          client.pause();
          setTimeout(() => client.resume(), 5);
        }
      });
      client.write(`${name}\n`);
      await once(client, 'end');
      client.destroy();
      return hash.digest('hex') === createHash('sha256').update(body).digest('hex');
    };
    expect(await Promise.all(['a', 'b', 'c'].map(fetchStalling))).toEqual([true, true, true]);
  });

  it('leaks no sockets or timers after many connections', async () => {
    const a = await server(nameServer('a'));
    const b = await server(nameServer('b'));
    const p = await proxyTo([a.endpoint, endpointAt(await deadPort()), b.endpoint]);
    const handles = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'Timeout').length;
    const before = handles();
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all(Array.from({ length: 50 }, () => fetchTcp(p.port)));
      expect(answers.every((x) => x === 'a' || x === 'b')).toBe(true);
    }
    await eventually(() => p.listener.activeConnections === 0, 3000, 'relays to finish');
    await eventually(() => handles() <= before, 3000, `handles back to ${before} (now ${handles()})`);
    expect(await p.metric('active_connections')).toBe(0);
    expect(await p.metric('connections_total')).toBe(500);
  });
});

/** Connects and resolves once the proxy has closed the connection, with how it ended. */
async function endedWithoutService(port: number): Promise<{ error: string | undefined; bytes: number }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let error: string | undefined;
  let bytes = 0;
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
  socket.on('data', (d: Buffer) => (bytes += d.length));
  await new Promise((resolve) => socket.once('close', resolve));
  return { error, bytes };
}

/** Writes and waits for the echo. */
async function echoes(socket: net.Socket, text: string): Promise<boolean> {
  socket.write(text);
  return (await nextData(socket)) === text;
}

describe('TcpServiceListener under abuse', () => {
  it('resets connections beyond the service port limit at once, counts them, and keeps the established ones', async () => {
    const echo = await server(echoServer());
    const p = await proxyTo([echo.endpoint], { perServicePort: 3 });
    const live = await Promise.all([1, 2, 3].map(() => connectTcp(p.port)));
    for (const [i, s] of live.entries()) expect(await echoes(s, `hello ${i}`)).toBe(true);

    const refused = await Promise.all(Array.from({ length: 5 }, () => endedWithoutService(p.port)));
    expect(refused).toEqual(Array.from({ length: 5 }, () => ({ error: 'ECONNRESET', bytes: 0 })));
    expect(await p.metric('connections_refused_total', { reason: 'service_port_limit' })).toBe(5);
    expect(echo.accepted).toBe(3);
    for (const [i, s] of live.entries()) expect(await echoes(s, `still ${i}`)).toBe(true);

    // A closed connection frees its slot for the next client.
    live[0]!.destroy();
    await eventually(() => p.budget.inUse === 2, 2000, 'the slot to be released');
    const next = await connectTcp(p.port);
    expect(await echoes(next, 'admitted')).toBe(true);
    for (const s of [...live, next]) s.destroy();
    await eventually(() => p.budget.inUse === 0, 2000, 'every slot to be released');
  });

  it('shares the total between service ports', async () => {
    const echo = await server(echoServer());
    const total = new ConnectionBudget(4);
    const a = await proxyTo([echo.endpoint], { perServicePort: 3, total });
    const b = await proxyTo([echo.endpoint], { perServicePort: 3, total });
    const held = await Promise.all([a.port, a.port, a.port, b.port].map((port) => connectTcp(port)));
    for (const s of held) expect(await echoes(s, 'x')).toBe(true);
    expect(await endedWithoutService(b.port)).toEqual({ error: 'ECONNRESET', bytes: 0 });
    expect(await b.metric('connections_refused_total', { reason: 'total_limit' })).toBe(1);
    expect(total.inUse).toBe(4);
    for (const s of held) s.destroy();
    await eventually(() => total.inUse === 0, 2000, 'the total to be released');
  });

  it('closes a relay that stays idle beyond the idle timeout; traffic keeps it open', async () => {
    const echo = await server(echoServer());
    const p = await proxyTo([echo.endpoint], { idleTimeoutMs: 300 });
    const client = await connectTcp(p.port);
    client.on('error', () => undefined);
    const closed = new Promise((resolve) => client.once('close', resolve));
    let lastEcho = 0;
    for (let i = 0; i < 6; i++) {
      expect(await echoes(client, `tick ${i}`)).toBe(true);
      lastEcho = Date.now();
      await new Promise((r) => setTimeout(r, 150));
    }
    // 900 ms in all, three times the idle timeout: the traffic kept it open.
    expect(client.destroyed).toBe(false);
    await closed;
    expect(Date.now() - lastEcho).toBeGreaterThanOrEqual(250);
    await eventually(() => p.listener.activeConnections === 0 && p.budget.inUse === 0, 2000, 'the relay to end');
  });

  it('gives a half-closed relay the shorter timeout, so a peer that never closes its side does not leak it', async () => {
    // An endpoint that reads and never answers, nor closes its side after the client's FIN.
    const silent = await server(tcpServer((s) => s.resume()));
    const p = await proxyTo([silent.endpoint], { idleTimeoutMs: 60_000, halfClosedIdleTimeoutMs: 300 });
    const client = await connectTcp(p.port);
    client.on('error', () => undefined);
    const clientClosed = new Promise((resolve) => client.once('close', resolve));
    client.end('request');
    await eventually(() => p.listener.activeConnections === 1, 1000, 'the relay to start');
    await clientClosed;
    await eventually(() => p.listener.activeConnections === 0 && p.budget.inUse === 0, 2000, 'the relay to end');
  });
});
