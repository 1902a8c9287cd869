import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createFakeClock, createTestLogger } from '@kube-proxy-ts/testing';
import { RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';
import { ConnectionBudget, ListenerBudget } from './limits.js';
import { ListenerMetrics } from './metrics.js';
import { UdpServiceListener } from './udp-listener.js';
import { deadPort, endpointAt, eventually, metricValue, udpClient, udpServer } from './sockets.test-support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function servers(...names: string[]) {
  const list = await Promise.all(names.map((n) => udpServer(n)));
  for (const s of list) cleanups.push(() => s.close());
  return list;
}

async function client(address?: string) {
  const c = await udpClient(address);
  cleanups.push(() => c.close());
  return c;
}

interface ProxyOptions {
  idleTimeoutMs?: number;
  /** Sessions this service port may hold; default 1000. */
  perServicePort?: number;
  /** ClientIP pins this service port may hold; default the balancer's. */
  affinityLimit?: number;
}

async function proxyTo(endpoints: BalancerEndpoint[], options: ProxyOptions = {}) {
  const { idleTimeoutMs = 250, perServicePort = 1000, affinityLimit } = options;
  const clock = createFakeClock();
  const balancer = new RoundRobinBalancer<BalancerEndpoint>({
    now: clock.now,
    random: () => 0,
    ...(affinityLimit ? { affinityLimit } : {}),
  });
  balancer.setEndpoints(endpoints);
  const registry = new Registry();
  const metrics = new ListenerMetrics(registry, { servicePort: 'ns/dns:dns', protocol: 'UDP', ipFamily: 'IPv4' });
  const budget = new ListenerBudget(perServicePort, new ConnectionBudget(1000));
  const listener = new UdpServiceListener({
    host: '127.0.0.1',
    balancer,
    metrics,
    logger: createTestLogger(),
    budget,
    family: 'IPv4',
    idleTimeoutMs,
    clock,
  });
  const port = await listener.open(0);
  cleanups.push(() => listener.close());
  const metric = (name: string, labels?: Record<string, string>) => metricValue(registry, name, labels);
  return { listener, balancer, budget, port, clock, metric };
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
    const p = await proxyTo([a!.endpoint, b!.endpoint], { idleTimeoutMs: 250 });
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

describe('UdpServiceListener under abuse', () => {
  it('drops new sessions beyond the service port limit and counts them; existing ones keep working until they expire', async () => {
    const [a] = await servers('a');
    const p = await proxyTo([a!.endpoint], { perServicePort: 3, idleTimeoutMs: 250 });
    const admitted = await Promise.all([1, 2, 3].map(() => client()));
    for (const [i, c] of admitted.entries()) expect(await c.ask(p.port, `q${i}`)).toBe(`a:q${i}`);
    const late = await client();
    await expect(late.ask(p.port, 'lost', 200)).rejects.toThrow(/no UDP reply/);
    expect(await p.metric('connections_refused_total', { reason: 'service_port_limit' })).toBe(1);
    expect(p.listener.activeConnections).toBe(3);
    expect(await admitted[0]!.ask(p.port, 'again')).toBe('a:again');

    // Idle sessions expire and give their slots back.
    p.clock.advance(250);
    expect(p.listener.activeConnections).toBe(0);
    expect(p.budget.inUse).toBe(0);
    expect(await late.ask(p.port, 'now')).toBe('a:now');
  });

  it('keeps sessions and ClientIP pins bounded under a flood of source addresses', async () => {
    const [a, b] = await servers('a', 'b');
    const p = await proxyTo([a!.endpoint, b!.endpoint], { perServicePort: 10, affinityLimit: 8 });
    p.balancer.setAffinityTimeout(10_800_000);
    const regular = await client();
    const answer = await regular.ask(p.port, 'hi');
    // 40 more clients, each from an address of its own (127.0.1.1 .. 127.0.1.40).
    const flood = await Promise.all(Array.from({ length: 40 }, (_, i) => client(`127.0.1.${i + 1}`)));
    for (const c of flood) c.send(p.port, 'flood');
    await eventually(() => a!.accepted + b!.accepted === 10, 3000, 'the admitted datagrams to arrive');
    const refused = () => p.metric('connections_refused_total', { reason: 'service_port_limit' });
    await eventually(() => p.listener.activeConnections === 10, 3000, 'the sessions to open');
    await new Promise((r) => setTimeout(r, 100)); // room for any datagram still on its way
    expect(await refused()).toBe(31);
    expect(p.listener.activeConnections).toBe(10);
    expect(p.balancer.affinityClients()).toBeLessThanOrEqual(8);
    // The regular client's session is one of those held: it is still served, by the same endpoint.
    expect(await regular.ask(p.port, 'hi')).toBe(answer);
  });

  it('moves a client whose endpoint refuses its datagrams to another endpoint, even with ClientIP affinity', async () => {
    const [a] = await servers('a');
    const p = await proxyTo([endpointAt(await deadPort()), a!.endpoint]);
    p.balancer.setAffinityTimeout(10_800_000);
    const c = await client();
    // The first session goes to the dead endpoint: the datagram is lost and the ICMP error ends it.
    await expect(c.ask(p.port, 'first', 300)).rejects.toThrow(/no UDP reply/);
    await eventually(() => p.listener.activeConnections === 0, 2000, 'the failed session to close');
    expect(await p.metric('connect_errors_total')).toBe(1);
    expect(await c.ask(p.port, 'second')).toBe('a:second');
    expect(await c.ask(p.port, 'third')).toBe('a:third');
  });
});
