// A TCP listener for one service port: accept (within the connection limits), pick an endpoint
// (failing over on connect errors), then relay both directions with backpressure, half-close and
// resets, until both sides close or the relay stays idle too long.

import net from 'node:net';
import { dialWithFailover } from './failover.js';
import type { BalancerEndpoint } from './balancer.js';
import { ENDPOINT_DIAL_TIMEOUTS_MS } from './layout.js';
import { RefusalLog } from './limits.js';
import type { ListenerDeps, ServiceListener } from './listener.js';

/**
 * TCP keepalive on both sides of a relay, after 15 s without traffic: the value upstream's Go
 * proxy had (Go's default for dialed and accepted connections), so that a peer that vanished
 * without a FIN or reset (a crashed node, a dropped route) ends its relay.
 */
export const TCP_KEEPALIVE_MS = 15_000;
/** A relay without traffic either way is closed after this long, as conntrack forgets an established flow. */
export const TCP_IDLE_TIMEOUT_MS = 24 * 3600_000;
/** Once one side sent its FIN, the relay is closed after this long without traffic, as conntrack's CLOSE_WAIT. */
export const TCP_HALF_CLOSED_IDLE_TIMEOUT_MS = 3600_000;

interface Relay {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  reportedToEndpoint: number;
  reportedToClient: number;
  open: number;
}

export interface TcpListenerOptions extends ListenerDeps {
  /** Per-attempt connect timeouts; default 250 ms, 500 ms, 1 s, 2 s. */
  readonly dialTimeouts?: readonly number[];
  /** Idle timeout of an open relay, ms; default TCP_IDLE_TIMEOUT_MS. */
  readonly idleTimeoutMs?: number;
  /** Idle timeout of a relay one side has half-closed, ms; default TCP_HALF_CLOSED_IDLE_TIMEOUT_MS. */
  readonly halfClosedIdleTimeoutMs?: number;
}

export class TcpServiceListener implements ServiceListener {
  readonly protocol = 'TCP' as const;
  private server: net.Server | undefined;
  /** Clients accepted and waiting for an endpoint connection. */
  private readonly pending = new Set<net.Socket>();
  private readonly relays = new Set<Relay>();
  private readonly refusals: RefusalLog;
  private readonly idleTimeoutMs: number;
  private readonly halfClosedIdleTimeoutMs: number;
  private closed = false;

  constructor(private readonly deps: TcpListenerOptions) {
    this.refusals = new RefusalLog((fields, msg) => deps.logger.warn(fields, msg), Date.now);
    this.idleTimeoutMs = timerMs('idleTimeoutMs', deps.idleTimeoutMs ?? TCP_IDLE_TIMEOUT_MS);
    this.halfClosedIdleTimeoutMs = timerMs('halfClosedIdleTimeoutMs', deps.halfClosedIdleTimeoutMs ?? TCP_HALF_CLOSED_IDLE_TIMEOUT_MS);
  }

  get serving(): boolean {
    return this.server !== undefined;
  }

  get activeConnections(): number {
    return this.relays.size;
  }

  open(port: number): Promise<number> {
    if (this.closed) return Promise.reject(new Error('listener is closed'));
    // pauseOnConnect: bytes that arrive before the endpoint answers wait in the kernel.
    const server = net.createServer({
      allowHalfOpen: true,
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: TCP_KEEPALIVE_MS,
    });
    server.on('connection', (client) => this.accept(client));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // An IPv6 listener on "::" stays IPv6-only: the IPv4 family has its own listeners.
      server.listen({ host: this.deps.host, port, exclusive: true, ipv6Only: this.deps.host === '::' }, () => {
        server.removeListener('error', reject);
        // Later errors are accept failures (EMFILE and the like): log them, keep listening.
        server.on('error', (err) => this.deps.logger.warn({ err: String(err) }, 'accept failed'));
        this.server = server;
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  pause(): void {
    this.server?.close();
    this.server = undefined;
  }

  endpointsRemoved(hostPorts: ReadonlySet<string>): void {
    void hostPorts;
    // Established TCP connections to a removed endpoint are left alone, as the kernel backends
    // leave their conntrack entries; only new connections avoid the endpoint.
  }

  flushMetrics(): void {
    for (const relay of this.relays) this.report(relay);
  }

  close(): void {
    this.closed = true;
    this.pause();
    for (const client of this.pending) client.destroy();
    this.pending.clear();
    // A deleted service's connections end with a reset on both sides, so neither peer waits
    // for data that will never come.
    for (const relay of [...this.relays]) {
      relay.client.resetAndDestroy();
      relay.upstream.resetAndDestroy();
    }
  }

  private accept(client: net.Socket): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    const { balancer, metrics, logger, budget } = this.deps;
    const admitted = budget.admit();
    if (typeof admitted === 'string') {
      // A reset, not a FIN: the client learns at once, and no orphaned socket lingers here.
      metrics.refused(admitted);
      this.refusals.refused(admitted, budget.limitFor(admitted));
      client.resetAndDestroy();
      return;
    }
    const release = admitted;
    // remoteAddress costs a getpeername() call: only affinity needs it.
    const clientIP = balancer.sticky ? client.remoteAddress : undefined;
    this.pending.add(client);
    // Until the relay takes over, an error (a reset) just ends the wait.
    const onEarlyError = () => client.destroy();
    client.on('error', onEarlyError);
    void dialWithFailover<BalancerEndpoint, EndpointConnection>({
      pick: (reset) => balancer.pick(clientIP, reset),
      dial: dialTcp,
      onFailure: (endpoint, err) => {
        metrics.connectError();
        logger.debug({ endpoint: endpoint.hostPort, err: err.message }, 'endpoint connect failed, trying the next one');
      },
      cancelled: () => client.destroyed,
      timeouts: this.deps.dialTimeouts ?? ENDPOINT_DIAL_TIMEOUTS_MS,
    }).then((result) => {
      this.pending.delete(client);
      client.removeListener('error', onEarlyError);
      if (result.kind === 'connected') {
        if (!client.destroyed && !this.closed) {
          this.relay(client, result.conn, release);
          return;
        }
        result.conn.socket.destroy();
      }
      release();
      if (result.kind === 'failed') logger.info({ err: result.error.message, attempts: result.failures }, 'no endpoint answered');
      if (!client.destroyed) client.resetAndDestroy();
    });
  }

  private relay(client: net.Socket, endpoint: EndpointConnection, release: () => void): void {
    const upstream = endpoint.socket;
    const relay: Relay = { client, upstream, reportedToEndpoint: 0, reportedToClient: 0, open: 2 };
    this.relays.add(relay);
    this.deps.metrics.connectionOpened();
    forward(client, upstream);
    endpoint.relayTo(client); // resumes the endpoint socket
    client.resume(); // pauseOnConnect left it paused
    // A reset on one side becomes a reset on the other.
    client.on('error', () => upstream.resetAndDestroy());
    upstream.on('error', () => client.resetAndDestroy());
    // Each socket's timer restarts with its reads and writes, and every byte relayed is a read
    // on one and a write on the other: either timing out means the relay is idle. Keepalive
    // does not count (a peer can be alive and never speak again), and neither does a FIN.
    const idle = () => {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    for (const socket of [client, upstream]) {
      socket.setTimeout(this.idleTimeoutMs);
      socket.on('timeout', idle);
      socket.once('end', () => {
        client.setTimeout(this.halfClosedIdleTimeoutMs);
        upstream.setTimeout(this.halfClosedIdleTimeoutMs);
      });
    }
    const onClose = (other: net.Socket) => () => {
      // After a clean close in both directions the other socket finishes on its own; anything
      // else (destroyed, aborted) must not leave it open.
      if (!other.destroyed && !(other.readableEnded && other.writableEnded)) other.destroy();
      if (--relay.open === 0) {
        this.relays.delete(relay);
        release();
        this.report(relay);
        this.deps.metrics.connectionClosed();
      }
    };
    client.once('close', onClose(upstream));
    upstream.once('close', onClose(client));
  }

  private report(relay: Relay): void {
    const toEndpoint = relay.client.bytesRead - relay.reportedToEndpoint;
    const toClient = relay.upstream.bytesRead - relay.reportedToClient;
    relay.reportedToEndpoint += toEndpoint;
    relay.reportedToClient += toClient;
    this.deps.metrics.bytes(toEndpoint, toClient);
  }
}

/**
 * Copies `from` to `to` with backpressure (a full `to` pauses `from` until it drains) and turns
 * the end of `from` into a FIN on `to`, so that with allowHalfOpen the other direction keeps
 * flowing. Lighter than pipe(), which matters at thousands of connections per second.
 */
function forward(from: net.Socket, to: net.Socket): void {
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  from.on('data', (chunk: Buffer) => {
    if (to.write(chunk) || waiting) return;
    waiting = true;
    from.pause();
    to.once('drain', resume);
  });
  from.once('end', () => to.end());
}

/**
 * Endpoint sockets read into buffers of their own instead of Node's fresh buffer per read: the
 * garbage of one 64 KiB buffer per read, not the copying, cost the relay most of its CPU
 * (bench/userspace.ts: 2.0 s per GB before, 0.7-1.0 s after). 64 KiB per connection is what
 * upstream's userspace proxy held too (two 32 KiB copy buffers). Buffers freed by closed
 * connections are reused.
 */
const ENDPOINT_READ_BYTES = 64 * 1024;
const spareReadBuffers: Buffer[] = [];
const takeReadBuffer = () => spareReadBuffers.pop() ?? Buffer.allocUnsafe(ENDPOINT_READ_BYTES);
const returnReadBuffer = (b: Buffer) => {
  if (spareReadBuffers.length < 64) spareReadBuffers.push(b);
};

/** A connected endpoint socket, paused until relayTo() starts the endpoint-to-client direction. */
interface EndpointConnection {
  readonly socket: net.Socket;
  relayTo(client: net.Socket): void;
}

/**
 * Connects to an endpoint, failing after `timeoutMs`. Its bytes are relayed to the client (the
 * bulk of most traffic) straight from the read buffer, with backpressure, and its FIN becomes a
 * FIN to the client. While the client has not taken a chunk (the write is queued), the buffer
 * belongs to that write and reads go to another one.
 */
function dialTcp(endpoint: BalancerEndpoint, timeoutMs: number): Promise<EndpointConnection> {
  return new Promise((resolve, reject) => {
    let readBuffer = takeReadBuffer();
    let client: net.Socket | undefined;
    /** Per queued write, in order: the buffer it holds, if reads had to move to another one. */
    const queued: (Buffer | undefined)[] = [];
    const flushed = () => {
      const b = queued.shift();
      if (b) returnReadBuffer(b);
    };
    const resume = () => socket.resume();
    const socket = net.connect({
      host: endpoint.ip,
      port: endpoint.port,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: TCP_KEEPALIVE_MS,
      onread: {
        buffer: () => readBuffer,
        // Reading starts with relayTo()'s resume(), once the client is known.
        callback: (bytes, buf) => {
          if (!client) return false;
          const chunk = buf as Buffer; // readBuffer, the one this socket reads into
          const ok = client.write(chunk.subarray(0, bytes), flushed);
          if (client.writableLength > 0) {
            queued.push(chunk);
            readBuffer = takeReadBuffer();
          } else {
            queued.push(undefined);
          }
          if (ok) return true;
          client.once('drain', resume);
          return false; // stops reading until the client drains
        },
      },
    });
    socket.once('close', () => returnReadBuffer(readBuffer));
    const relayTo = (to: net.Socket) => {
      client = to;
      socket.once('end', () => to.end());
      socket.resume();
    };
    socket.pause();
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    const onTimeout = () => fail(new Error(`connect to ${endpoint.hostPort} timed out after ${timeoutMs} ms`));
    socket.setTimeout(timeoutMs);
    socket.once('timeout', onTimeout);
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.removeListener('timeout', onTimeout);
      socket.removeListener('error', fail);
      resolve({ socket, relayTo });
    });
  });
}

/** A timeout for socket.setTimeout(): positive, and at most what Node's timers take (2^31-1 ms, about 24.8 days). */
function timerMs(name: string, ms: number): number {
  if (!(ms > 0)) throw new Error(`${name} must be a positive number of milliseconds, got ${ms}`);
  return Math.min(Math.ceil(ms), 2 ** 31 - 1);
}
