// Starting and stopping the daemon's small HTTP servers on "IP:port" addresses.

import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '../config/net.js';

export interface RunningServer {
  /** The address actually bound (port resolved when 0 was asked). */
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

/** Listens on `hostPort` ("0.0.0.0:10256", "[::1]:10249", "127.0.0.1:0"); rejects on bind errors. */
export function listenHTTP(hostPort: string, handler: RequestListener): Promise<RunningServer> {
  const hp = splitHostPort(hostPort);
  if (!hp) return Promise.reject(new Error(`invalid listen address ${JSON.stringify(hostPort)}: must be IP:port`));
  return listenOn(hp.host, Number(hp.port), handler);
}

export function listenOn(host: string, port: number, handler: RequestListener): Promise<RunningServer> {
  const server = createServer(handler);
  // Probes and scrapes are short; do not let idle keep-alive sockets hold a port at shutdown.
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({ address: { host: a.address, port: a.port }, close: () => closeServer(server) });
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
