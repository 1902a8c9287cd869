import { afterEach, describe, expect, it } from 'vitest';
import { ClusterFeed, endpointSlice, node, proxyConfig, service, testContext, type TestContext } from '@kube-proxy-ts/testing';
import { UserspaceBackend, listenAddress, type UserspaceBackendOptions } from './backend.js';

type V1Service = ReturnType<typeof service>;
type V1EndpointSlice = ReturnType<typeof endpointSlice>;
import { CONTAINER_NODEPORT_CHAIN, CONTAINER_PORTAL_CHAIN, HOST_PORTAL_CHAIN } from './layout.js';
import { connectTcp, echoServer, fetchTcp, metricValue, nextData, udpClient, udpServer, nameServer, type TestServer } from './sockets.test-support.js';
import userspaceBackendFactory from './index.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const NODE_IP = '192.168.50.1';

/** A started backend listening on 127.0.0.1, with a recording runner, fed through core's tracker. */
async function setUp(config: Parameters<typeof proxyConfig>[0] = {}, options: Pick<UserspaceBackendOptions, 'limits'> = {}) {
  const backend = new UserspaceBackend({
    ipFamily: 'IPv4',
    config: proxyConfig({ bindAddress: '127.0.0.1', ...config }),
    raiseFileLimit: false,
    flavour: 'nft',
    ...options,
  });
  const ctx: TestContext = testContext({ node: { addresses: [NODE_IP] } });
  await backend.start(ctx);
  cleanups.push(() => backend.stop());
  const { tracker } = new ClusterFeed({ node: node('node1', { addresses: [NODE_IP] }) });
  const sync = async () => {
    const { state, changes } = tracker.checkpoint();
    const result = await backend.sync(state, changes);
    expect(result.error?.message).toBeUndefined();
    return result;
  };
  const payloads = () => ctx.runner.stdinsTo('iptables-nft-restore');
  return { backend, ctx, tracker, sync, payloads };
}

async function tcpServers(...names: string[]): Promise<TestServer[]> {
  const list = await Promise.all(names.map((n) => nameServer(n)));
  for (const s of list) cleanups.push(() => s.close());
  return list;
}

const slice = (name: string, ports: Array<{ name: string; port: number; protocol?: 'TCP' | 'UDP' }>, ips: string[]): V1EndpointSlice =>
  endpointSlice('ns', name, { endpoints: ips, ports });

const KEY = 'ns/web:http/TCP';

function webService(extra: Parameters<typeof service>[2] = {}): V1Service {
  return service('ns', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...(extra as object) });
}

describe('listenAddress', () => {
  it('listens on every address unless bindAddress names one of this family', () => {
    expect(listenAddress('0.0.0.0', 'IPv4')).toEqual({ host: '0.0.0.0', listenIP: undefined });
    expect(listenAddress('0.0.0.0', 'IPv6')).toEqual({ host: '::', listenIP: undefined });
    expect(listenAddress('10.0.0.5', 'IPv4')).toEqual({ host: '10.0.0.5', listenIP: '10.0.0.5' });
    expect(listenAddress('10.0.0.5', 'IPv6')).toEqual({ host: '::', listenIP: undefined });
  });
});

describe('UserspaceBackend', () => {
  it('is the default export and creates a backend named userspace', () => {
    expect(userspaceBackendFactory({ ipFamily: 'IPv4', config: proxyConfig() }).name).toBe('userspace');
  });

  it('start() changes nothing on the node; the first sync creates the chains and jumps, again after a restart', async () => {
    const { backend, ctx, sync } = await setUp();
    expect(ctx.runner.calls).toEqual([]);
    await sync();
    const calls = ctx.runner.callsTo('iptables-nft').map((c) => c.args.join(' '));
    expect(calls).toContain('-w -t nat -N KUBE-PORTALS-CONTAINER');
    expect(calls).toContain('-w -t nat -N KUBE-NODEPORT-HOST');
    // The recording runner answers 0 to -C: the jumps look present, so none is inserted.
    expect(calls.filter((c) => c.includes(' -I ') || c.includes(' -A '))).toEqual([]);
    ctx.runner.reset();
    ctx.runner.on('iptables-nft', { code: 1, stderr: 'Bad rule' }, (args) => args.includes('-C'));
    await backend.start(ctx);
    await sync();
    const inserted = ctx.runner.callsTo('iptables-nft').map((c) => c.args.slice(3, 6).join(' ')).filter((a) => /^-[IA] /.test(a));
    expect(inserted).toEqual(['-I PREROUTING 1', '-I OUTPUT 1', '-A PREROUTING -m', '-A OUTPUT -m']);
  });

  it('proxies a ClusterIP service and writes its portal rules in one iptables-restore --noflush', async () => {
    const [a, b] = await tcpServers('a', 'b');
    const s = await setUp();
    s.tracker.onServiceAdd(webService());
    s.tracker.onEndpointSliceAdd(slice('web', [{ name: 'http', port: a!.endpoint.port }], ['127.0.0.1']));
    s.ctx.runner.reset();
    await s.sync();
    const port = s.backend.listenerPort(KEY)!;
    expect(port).toBeGreaterThan(0);
    const restores = s.ctx.runner.callsTo('iptables-nft-restore');
    expect(restores).toHaveLength(1);
    expect(restores[0]!.args).toEqual(['-w', '5', '-W', '100000', '--noflush']);
    const payload = restores[0]!.stdin!;
    expect(payload).toContain(':KUBE-PORTALS-CONTAINER - [0:0]');
    expect(payload).toContain(
      `-A KUBE-PORTALS-CONTAINER -m comment --comment ns/web:http -p tcp -m tcp --dport 80 -d 10.96.0.10/32 -j DNAT --to-destination 127.0.0.1:${port}`,
    );
    expect(await fetchTcp(port)).toBe('a');

    // A second endpoint: the listener (and its port) stay, round robin covers both.
    s.tracker.onEndpointSliceAdd(endpointSlice('ns', 'web', 'web-b', { endpoints: ['127.0.0.1'], ports: [{ name: 'http', port: b!.endpoint.port }] }));
    await s.sync();
    expect(s.backend.listenerPort(KEY)).toBe(port);
    const answers = new Set([await fetchTcp(port), await fetchTcp(port)]);
    expect(answers).toEqual(new Set(['a', 'b']));
  });

  it('a service without endpoints refuses connections; they are served again when endpoints return', async () => {
    const [a] = await tcpServers('a');
    const s = await setUp();
    const eps = slice('web', [{ name: 'http', port: a!.endpoint.port }], ['127.0.0.1']);
    s.tracker.onServiceAdd(webService());
    await s.sync();
    const port = s.backend.listenerPort(KEY)!;
    await expect(fetchTcp(port)).rejects.toThrow(/ECONNREFUSED/);
    expect(s.payloads().at(-1)).toContain(`--to-destination 127.0.0.1:${port}`);
    s.tracker.onEndpointSliceAdd(eps);
    await s.sync();
    expect(s.backend.listenerPort(KEY)).toBe(port);
    expect(await fetchTcp(port)).toBe('a');
  });

  it('deleting the service closes its listener and removes its rules', async () => {
    const [a] = await tcpServers('a');
    const s = await setUp();
    const svc = webService();
    s.tracker.onServiceAdd(svc);
    s.tracker.onEndpointSliceAdd(slice('web', [{ name: 'http', port: a!.endpoint.port }], ['127.0.0.1']));
    await s.sync();
    const port = s.backend.listenerPort(KEY)!;
    s.tracker.onServiceDelete(svc);
    await s.sync();
    expect(s.backend.listenerPort(KEY)).toBeUndefined();
    await expect(fetchTcp(port)).rejects.toThrow(/ECONNREFUSED/);
    expect(s.payloads().at(-1)).not.toContain('ns/web');
  });

  it('proxies UDP and steers NodePort, externalIP and LoadBalancer traffic (source ranges honoured)', async () => {
    const dns = await udpServer('dns');
    cleanups.push(() => dns.close());
    const s = await setUp({ nodePortAddresses: ['192.168.50.0/24'] });
    s.tracker.onServiceAdd(
      service('ns', 'dns', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.53',
        externalIPs: ['192.168.99.1'],
        loadBalancerIngress: ['5.6.7.8'],
        loadBalancerSourceRanges: ['203.0.113.0/24'],
        ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }],
      }),
    );
    s.tracker.onEndpointSliceAdd(slice('dns', [{ name: 'dns', port: dns.endpoint.port, protocol: 'UDP' }], ['127.0.0.1']));
    await s.sync();
    const port = s.backend.listenerPort('ns/dns:dns/UDP')!;
    const c = await udpClient();
    cleanups.push(() => c.close());
    expect(await c.ask(port, 'q')).toBe('dns:q');
    const rules = s.payloads().at(-1)!.split('\n');
    const to = `-j DNAT --to-destination 127.0.0.1:${port}`;
    expect(rules).toContain(`-A ${CONTAINER_PORTAL_CHAIN} -m comment --comment ns/dns:dns -p udp -m udp --dport 53 -d 192.168.99.1/32 ${to}`);
    expect(rules).toContain(`-A ${HOST_PORTAL_CHAIN} -m comment --comment ns/dns:dns -p udp -m udp --dport 53 -d 5.6.7.8/32 -s 203.0.113.0/24 ${to}`);
    expect(rules).toContain(`-A ${CONTAINER_NODEPORT_CHAIN} -m comment --comment ns/dns:dns -p udp -m udp --dport 30053 -d 192.168.50.0/24 ${to}`);
    expect(rules.filter((r) => r.includes('5.6.7.8') && !r.includes('-s 203.0.113.0/24'))).toEqual([]);
  });

  it('refuses SCTP with one warning, and keeps serving the other ports', async () => {
    const s = await setUp();
    s.tracker.onServiceAdd(
      service('ns', 'mixed', { ports: [{ name: 'sctp', port: 9, protocol: 'SCTP' }, { name: 'http', port: 80 }] }),
    );
    await s.sync();
    await s.sync();
    const warnings = s.ctx.logger.at('warn').filter((e) => e.fields.servicePort === 'ns/mixed:sctp/SCTP');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toMatch(/SCTP is not supported/);
    expect(s.backend.listenerPort('ns/mixed:http/TCP')).toBeGreaterThan(0);
  });

  it('gives internal and external traffic their own listeners when their policies differ', async () => {
    const s = await setUp();
    s.tracker.onServiceAdd(
      service('ns', 'np', { type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
    );
    s.tracker.onEndpointSliceAdd(
      endpointSlice('ns', 'np', { endpoints: [{ ip: '10.0.0.1', nodeName: 'other' }], ports: [{ name: 'http', port: 8080 }] }),
    );
    await s.sync();
    const picture = (await s.backend.inspect()) as { listeners: Array<{ id: string; serving: boolean; endpoints: string[] }> };
    expect(picture.listeners).toEqual([
      expect.objectContaining({ id: 'ns/np:http/TCP#external', serving: false, endpoints: [] }),
      expect.objectContaining({ id: 'ns/np:http/TCP#internal', serving: true, endpoints: ['10.0.0.1:8080'] }),
    ]);
  });

  it('reports a failed iptables-restore in the result instead of throwing', async () => {
    const s = await setUp();
    s.ctx.runner.on('iptables-nft-restore', { code: 2, stderr: 'iptables-restore: line 3 failed' });
    const { state, changes } = s.tracker.checkpoint();
    const result = await s.backend.sync(state, changes);
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(/line 3/);
  });

  it('honours the proxy port range', async () => {
    const s = await setUp({ portRange: '40100-40110' });
    s.tracker.onServiceAdd(webService());
    await s.sync();
    const port = s.backend.listenerPort(KEY)!;
    expect(port).toBeGreaterThanOrEqual(40100);
    expect(port).toBeLessThanOrEqual(40110);
  });

  it('a listener that cannot get a port fails the sync but not the other service ports', async () => {
    const s = await setUp({ portRange: '40120-40120' });
    s.tracker.onServiceAdd(webService());
    s.tracker.onServiceAdd(service('ns', 'zzz', { clusterIP: '10.96.0.99', ports: [{ name: 'http', port: 80 }] }));
    const { state, changes } = s.tracker.checkpoint();
    const result = await s.backend.sync(state, changes);
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(/ns\/zzz:http\/TCP: no free port/);
    expect(s.backend.listenerPort(KEY)).toBe(40120);
    const payload = s.payloads().at(-1)!;
    expect(payload).toContain('--to-destination 127.0.0.1:40120');
    expect(payload).not.toContain('10.96.0.99');
  });

  it('cleanup() stops listening, deletes the jumps and the chains', async () => {
    const [a] = await tcpServers('a');
    const s = await setUp();
    s.tracker.onServiceAdd(webService());
    s.tracker.onEndpointSliceAdd(slice('web', [{ name: 'http', port: a!.endpoint.port }], ['127.0.0.1']));
    await s.sync();
    const port = s.backend.listenerPort(KEY)!;
    s.ctx.runner.reset();
    s.ctx.runner.once('iptables-nft', { code: 0 }, (args) => args.includes('-D'));
    s.ctx.runner.on('iptables-nft', { code: 1, stderr: 'does a matching rule exist' }, (args) => args.includes('-D'));
    await s.backend.cleanup(s.ctx);
    await expect(fetchTcp(port)).rejects.toThrow(/ECONNREFUSED/);
    const payload = s.payloads().at(-1)!;
    expect(payload).toContain('-X KUBE-PORTALS-CONTAINER');
    expect(payload).toContain('-X KUBE-NODEPORT-HOST');
    expect(s.ctx.runner.callsTo('iptables-nft').filter((c) => c.args.includes('-D')).length).toBeGreaterThanOrEqual(4);
  });
});

describe('UserspaceBackend connection limits', () => {
  it('bounds the connections of all service ports together; a refused client is reset and counted', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const s = await setUp({}, { limits: { tcpConnections: 2, tcpConnectionsPerServicePort: 2 } });
    s.tracker.onServiceAdd(webService());
    s.tracker.onEndpointSliceAdd(slice('web', [{ name: 'http', port: echo.endpoint.port }], ['127.0.0.1']));
    s.tracker.onServiceAdd(service('ns', 'api', { clusterIP: '10.96.0.11', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    s.tracker.onEndpointSliceAdd(slice('api', [{ name: 'http', port: echo.endpoint.port }], ['127.0.0.1']));
    await s.sync();
    const held = await Promise.all([1, 2].map(() => connectTcp(s.backend.listenerPort(KEY)!)));
    for (const c of held) {
      c.on('error', () => undefined);
      c.write('x');
      expect(await nextData(c)).toBe('x');
    }
    await expect(fetchTcp(s.backend.listenerPort('ns/api:http/TCP')!)).rejects.toThrow(/ECONNRESET/);
    const refused = { service_port: 'ns/api:http/TCP', reason: 'total_limit' };
    expect(await metricValue(s.ctx.metrics, 'connections_refused_total', refused)).toBe(1);
    for (const c of held) c.destroy();
  });

  it('refuses limits that are not positive integers with a clear error', async () => {
    await expect(setUp({}, { limits: { udpSessions: 0 } })).rejects.toThrow(/connection limit udpSessions must be a positive integer/);
  });
});
