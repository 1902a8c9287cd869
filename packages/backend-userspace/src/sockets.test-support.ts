// Loopback servers and clients for the real-socket tests of this package (not exported).

import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import type { Registry } from 'prom-client';
import type { BalancerEndpoint } from './balancer.js';

export interface TestServer {
  readonly endpoint: BalancerEndpoint;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export function endpointAt(port: number, ip = '127.0.0.1'): BalancerEndpoint {
  return { hostPort: `${ip}:${port}`, ip, port };
}

/** A TCP server on 127.0.0.1 handing each connection to `handle`. */
export async function tcpServer(handle: (socket: net.Socket) => void): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    handle(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: endpointAt((server.address() as net.AddressInfo).port),
    get accepted() {
      return accepted;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Answers every connection with `name` and closes. */
export const nameServer = (name: string) => tcpServer((s) => s.end(name));

/** Echoes; after the client's FIN writes "bye" and closes its side. */
export const echoServer = () =>
  tcpServer((s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end('bye'));
  });

/** A port on 127.0.0.1 nobody listens on (connects are refused). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Connects, optionally writes, and collects everything until the server closes. */
export function fetchTcp(port: number, send?: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('connect', () => {
      if (send !== undefined) socket.end(send);
    });
  });
}

/** Connects and resolves with the socket once connected. */
export async function connectTcp(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Resolves with the next chunk the socket reads. */
export async function nextData(socket: net.Socket): Promise<string> {
  const [data] = (await once(socket, 'data')) as [Buffer];
  return data.toString();
}

/** A UDP server on 127.0.0.1 answering every datagram with `<name>:<datagram>`. */
export async function udpServer(name: string): Promise<TestServer & { readonly peers: Set<string> }> {
  const socket = dgram.createSocket('udp4');
  const peers = new Set<string>();
  let accepted = 0;
  socket.on('message', (msg, rinfo) => {
    accepted++;
    peers.add(`${rinfo.address}:${rinfo.port}`);
    socket.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return {
    endpoint: endpointAt(socket.address().port),
    peers,
    get accepted() {
      return accepted;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

export interface UdpTestClient {
  ask(port: number, msg: string, timeoutMs?: number): Promise<string>;
  /** Sends without waiting for an answer. */
  send(port: number, msg: string): void;
  close(): void;
}

/** A UDP client socket on `address` (any of 127.0.0.0/8) that can ask and wait for one answer. */
export async function udpClient(address = '127.0.0.1'): Promise<UdpTestClient> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, address);
  await once(socket, 'listening');
  return {
    ask(port, msg, timeoutMs = 2000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          socket.removeListener('message', onMessage);
          reject(new Error(`no UDP reply from port ${port} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onMessage = (reply: Buffer) => {
          clearTimeout(timer);
          resolve(reply.toString());
        };
        socket.once('message', onMessage);
        socket.send(msg, port, '127.0.0.1');
      });
    },
    send: (port, msg) => socket.send(msg, port, '127.0.0.1'),
    close: () => socket.close(),
  };
}

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
export async function eventually(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The value of one `kubeproxy_userspace_<name>` series whose labels include `labels`; 0 when absent. */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === `kubeproxy_userspace_${name}`);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}
