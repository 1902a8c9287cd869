import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createFakeClock, createTestLogger } from '@kube-proxy-ts/testing';
import { RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';
import { ListenerMetrics } from './metrics.js';
import { UdpServiceListener } from './udp-listener.js';
import { eventually, udpClient, udpServer } from './test-support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function servers(...names: string[]) {
  const list = await Promise.all(names.map((n) => udpServer(n)));
  for (const s of list) cleanups.push(() => s.close());
  return list;
}

async function client() {
  const c = await udpClient();
  cleanups.push(() => c.close());
  return c;
}

async function proxyTo(endpoints: BalancerEndpoint[], idleTimeoutMs = 250) {
  const clock = createFakeClock();
  const balancer = new RoundRobinBalancer<BalancerEndpoint>({ now: clock.now, random: () => 0 });
  balancer.setEndpoints(endpoints);
  const metrics = new ListenerMetrics(new Registry(), { servicePort: 'ns/dns:dns', protocol: 'UDP', ipFamily: 'IPv4' });
  const listener = new UdpServiceListener({
    host: '127.0.0.1',
    balancer,
    metrics,
    logger: createTestLogger(),
    family: 'IPv4',
    idleTimeoutMs,
    clock,
  });
  const port = await listener.open(0);
  cleanups.push(() => listener.close());
  return { listener, balancer, port, clock };
}

describe('UdpServiceListener on 127.0.0.1', () => {
  it('relays replies back to the client, one session per client address', async () => {
    const [a, b] = await servers('a', 'b');
    const p = await proxyTo([a!.endpoint, b!.endpoint]);
    const c1 = await client();
    const c2 = await client();
    expect(await c1.ask(p.port, 'q1')).toBe('a:q1');
    expect(await c2.ask(p.port, 'q2')).toBe('b:q2');
    // Same client, same session: same endpoint, from the same proxy socket.
    expect(await c1.ask(p.port, 'q3')).toBe('a:q3');
    expect(p.listener.activeConnections).toBe(2);
    expect(a!.peers.size).toBe(1);
  });

  it('ends an idle session after the UDP timeout; the next datagram opens a new one', async () => {
    const [a, b] = await servers('a', 'b');
    const p = await proxyTo([a!.endpoint, b!.endpoint], 250);
    const c = await client();
    expect(await c.ask(p.port, 'x')).toBe('a:x');
    p.clock.advance(200);
    expect(await c.ask(p.port, 'y')).toBe('a:y'); // traffic restarted the idle period
    p.clock.advance(200);
    expect(p.listener.activeConnections).toBe(1);
    p.clock.advance(60);
    expect(p.listener.activeConnections).toBe(0);
    expect(p.clock.pendingTimers()).toBe(0);
    expect(await c.ask(p.port, 'z')).toBe('b:z');
  });

  it('closes the sessions of a removed endpoint; clients move to the remaining ones', async () => {
    const [a, b] = await servers('a', 'b');
    const p = await proxyTo([a!.endpoint, b!.endpoint]);
    const c1 = await client();
    const c2 = await client();
    expect(await c1.ask(p.port, '1')).toBe('a:1');
    expect(await c2.ask(p.port, '2')).toBe('b:2');
    p.balancer.setEndpoints([b!.endpoint]);
    p.listener.endpointsRemoved(new Set([a!.endpoint.hostPort]));
    expect(p.listener.activeConnections).toBe(1);
    expect(await c1.ask(p.port, '3')).toBe('b:3');
    expect(await c2.ask(p.port, '4')).toBe('b:4');
  });

  it('drops datagrams when there is no endpoint, and close() releases every session', async () => {
    const [a] = await servers('a');
    const p = await proxyTo([]);
    const c = await client();
    await expect(c.ask(p.port, 'lost', 200)).rejects.toThrow(/no UDP reply/);
    expect(p.listener.activeConnections).toBe(0);
    p.balancer.setEndpoints([a!.endpoint]);
    expect(await c.ask(p.port, 'ok')).toBe('a:ok');
    p.listener.close();
    expect(p.listener.activeConnections).toBe(0);
    expect(p.listener.serving).toBe(false);
    await eventually(() => p.clock.pendingTimers() === 0);
  });
});
