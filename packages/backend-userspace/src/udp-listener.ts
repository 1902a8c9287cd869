// A UDP listener for one service port: each client address gets a session, a socket connected
// to the chosen endpoint; replies go back to the client from the service port's socket. Idle
// sessions close after the UDP timeout. Source addresses are free to forge, so everything kept
// per client is bounded: sessions by the connection limits, pins by the balancer's affinity limit.

import dgram from 'node:dgram';
import type { Clock, IPFamily } from '@kube-proxy-ts/core';
import type { BalancerEndpoint } from './balancer.js';
import { RefusalLog } from './limits.js';
import type { ListenerDeps, ServiceListener } from './listener.js';
import { UdpSessionTable } from './udp-sessions.js';

/** Datagrams held while a new session's socket connects. */
const MAX_QUEUED_DATAGRAMS = 64;

export interface UdpListenerOptions extends ListenerDeps {
  readonly family: IPFamily;
  /** Idle timeout of a client session, ms (upstream --udp-timeout). */
  readonly idleTimeoutMs: number;
  readonly clock: Clock;
}

class UdpSession {
  readonly socket: dgram.Socket;
  private queue: Buffer[] | undefined = [];
  private closed = false;
  toEndpoint = 0;
  toClient = 0;
  reportedToEndpoint = 0;
  reportedToClient = 0;

  constructor(
    readonly endpoint: BalancerEndpoint,
    family: IPFamily,
    onReply: (msg: Buffer) => void,
    onError: (err: Error) => void,
    private readonly onClose: (session: UdpSession) => void,
  ) {
    this.socket = dgram.createSocket(family === 'IPv6' ? 'udp6' : 'udp4');
    this.socket.on('message', (msg) => {
      this.toClient += msg.length;
      onReply(msg);
    });
    // ECONNREFUSED here means the endpoint answered with an ICMP unreachable.
    this.socket.on('error', onError);
    this.socket.connect(endpoint.port, endpoint.ip, () => {
      const queued = this.queue ?? [];
      this.queue = undefined;
      for (const msg of queued) this.write(msg);
    });
  }

  send(msg: Buffer): void {
    this.toEndpoint += msg.length;
    if (this.queue) {
      if (this.queue.length < MAX_QUEUED_DATAGRAMS) this.queue.push(msg);
      return;
    }
    this.write(msg);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.onClose(this);
  }

  private write(msg: Buffer): void {
    if (!this.closed) this.socket.send(msg);
  }
}

export class UdpServiceListener implements ServiceListener {
  readonly protocol = 'UDP' as const;
  private socket: dgram.Socket | undefined;
  private readonly sessions: UdpSessionTable<UdpSession>;
  private readonly refusals: RefusalLog;
  private closed = false;

  constructor(private readonly deps: UdpListenerOptions) {
    this.sessions = new UdpSessionTable<UdpSession>(deps.idleTimeoutMs, deps.clock);
    this.refusals = new RefusalLog((fields, msg) => deps.logger.warn(fields, msg), deps.clock.now);
  }

  get serving(): boolean {
    return this.socket !== undefined;
  }

  get activeConnections(): number {
    return this.sessions.size;
  }

  open(port: number): Promise<number> {
    if (this.closed) return Promise.reject(new Error('listener is closed'));
    const socket = dgram.createSocket({ type: this.deps.family === 'IPv6' ? 'udp6' : 'udp4', ipv6Only: this.deps.family === 'IPv6' });
    socket.on('message', (msg, rinfo) => this.fromClient(socket, msg, rinfo));
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        socket.close();
        reject(err);
      };
      socket.once('error', onError);
      socket.bind({ address: this.deps.host, port, exclusive: true }, () => {
        socket.removeListener('error', onError);
        socket.on('error', (err) => this.deps.logger.warn({ err: String(err) }, 'UDP listener error'));
        this.socket = socket;
        resolve(socket.address().port);
      });
    });
  }

  pause(): void {
    // Sessions keep their own sockets, but replies leave through this one: a paused UDP
    // listener can no longer answer, so its sessions end with it.
    this.sessions.closeAll();
    this.socket?.close();
    this.socket = undefined;
  }

  endpointsRemoved(hostPorts: ReadonlySet<string>): void {
    this.sessions.deleteWhere((session) => hostPorts.has(session.endpoint.hostPort));
  }

  flushMetrics(): void {
    for (const session of this.sessions.values()) this.report(session);
  }

  close(): void {
    this.closed = true;
    this.pause();
  }

  private fromClient(listener: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let session = this.sessions.get(key);
    if (!session) {
      const { budget, metrics } = this.deps;
      // Checked before picking, so that a refused client leaves no affinity pin behind.
      const admitted = budget.admit();
      if (typeof admitted === 'string') {
        metrics.refused(admitted);
        this.refusals.refused(admitted, budget.limitFor(admitted));
        return;
      }
      const endpoint = this.deps.balancer.pick(rinfo.address);
      if (!endpoint) {
        admitted();
        return;
      }
      session = this.openSession(listener, key, rinfo, endpoint, admitted);
    } else {
      this.sessions.touch(key);
    }
    session.send(msg);
  }

  private openSession(
    listener: dgram.Socket,
    key: string,
    client: dgram.RemoteInfo,
    endpoint: BalancerEndpoint,
    release: () => void,
  ): UdpSession {
    const { metrics, logger } = this.deps;
    const session = new UdpSession(
      endpoint,
      this.deps.family,
      (reply) => {
        this.sessions.touch(key);
        if (this.socket === listener) listener.send(reply, client.port, client.address);
      },
      (err) => {
        metrics.connectError();
        logger.debug({ endpoint: endpoint.hostPort, err: err.message }, 'UDP endpoint error, closing the session');
        // The client's next session is balanced afresh instead of returning to this endpoint.
        this.deps.balancer.forgetClient(client.address);
        this.sessions.delete(key);
      },
      (closed) => {
        release();
        this.report(closed);
        metrics.connectionClosed();
      },
    );
    metrics.connectionOpened();
    return this.sessions.add(key, session);
  }

  private report(session: UdpSession): void {
    const toEndpoint = session.toEndpoint - session.reportedToEndpoint;
    const toClient = session.toClient - session.reportedToClient;
    session.reportedToEndpoint = session.toEndpoint;
    session.reportedToClient = session.toClient;
    this.deps.metrics.bytes(toEndpoint, toClient);
  }
}
