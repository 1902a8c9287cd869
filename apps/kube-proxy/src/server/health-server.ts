// The proxy health server on healthzBindAddress: /healthz and /livez with upstream's JSON bodies,
// status codes and headers, counting each answer in proxy_healthz_total / proxy_livez_total.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ProxyHealth } from '@kube-proxy-ts/core';
import type { Registry } from 'prom-client';
import { daemonMetrics } from '../daemon/metrics.js';
import { goTimeString } from './go-time.js';
import { listenHTTP, type RunningServer } from './listen.js';

export function healthHandler(health: ProxyHealth, registry: Registry) {
  const m = daemonMetrics(registry);
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/livez') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('404 page not found\n');
      return;
    }
    const status = path === '/healthz' ? health.healthz() : health.livez();
    const code = status.healthy ? 200 : 503;
    (path === '/healthz' ? m.healthzTotal : m.livezTotal).labels(String(code)).inc();
    // A healthy proxy reports "now" as lastUpdated, as upstream does for compatibility.
    const lastUpdated = goTimeString(status.healthy ? status.currentTime : status.lastUpdated);
    const now = goTimeString(status.currentTime);
    const body =
      path === '/healthz'
        ? `{"lastUpdated": ${JSON.stringify(lastUpdated)},"currentTime": ${JSON.stringify(now)}, "nodeEligible": ${status.nodeEligible}}`
        : `{"lastUpdated": ${JSON.stringify(lastUpdated)},"currentTime": ${JSON.stringify(now)}}`;
    res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
    res.end(body);
  };
}

export function startHealthServer(address: string, health: ProxyHealth, registry: Registry): Promise<RunningServer> {
  return listenHTTP(address, healthHandler(health, registry));
}
