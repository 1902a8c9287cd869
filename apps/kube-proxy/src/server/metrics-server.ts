// The metrics server on metricsBindAddress, with what upstream serves there: /metrics
// (Prometheus text), /configz (the running configuration), /proxyMode, and /healthz ("ok").

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ProxyConfig } from '@kube-proxy-ts/core';
import type { Registry } from 'prom-client';
import { GROUP, toV1Alpha1 } from '../config/v1alpha1.js';
import { listenHTTP, type RunningServer } from './listen.js';

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' };

/** Answers the requests it knows (true), e.g. `kube-proxy inspect`'s; others fall through to 404. */
export type ExtraHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export function metricsHandler(registry: Registry, config: ProxyConfig, extra?: ExtraHandler) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/metrics':
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'Content-Type': registry.contentType });
            res.end(text);
          },
          (err: Error) => {
            res.writeHead(500, TEXT);
            res.end(`error gathering metrics: ${err.message}\n`);
          },
        );
        return;
      case '/proxyMode':
        res.writeHead(200, TEXT);
        res.end(config.mode);
        return;
      case '/configz':
        // Keyed by API group, as upstream's configz does.
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
        res.end(JSON.stringify({ [GROUP]: toV1Alpha1(config) }));
        return;
      case '/healthz':
        res.writeHead(200, TEXT);
        res.end('ok');
        return;
      default:
        if (extra?.(req, res)) return;
        res.writeHead(404, TEXT);
        res.end('404 page not found\n');
    }
  };
}

export function startMetricsServer(address: string, registry: Registry, config: ProxyConfig, extra?: ExtraHandler): Promise<RunningServer> {
  return listenHTTP(address, metricsHandler(registry, config, extra));
}
