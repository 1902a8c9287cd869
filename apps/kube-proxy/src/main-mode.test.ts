import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from './main.js';

describe('main: the proxy mode is checked first', () => {
  let apiServer: Server;
  const requests: string[] = [];

  beforeAll(async () => {
    // Stands in for the API server: records what the proxy asks and answers nothing useful.
    apiServer = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => apiServer.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => apiServer.close(() => resolve())));

  it('an unknown mode fails with a clear error before anything is listed from the API server', async () => {
    const { port } = apiServer.address() as AddressInfo;
    let err = '';
    const code = await main(
      [
        '--proxy-mode=kpts-no-such-backend',
        `--master=http://127.0.0.1:${port}`,
        '--healthz-bind-address=',
        '--metrics-bind-address=',
        // Nothing of the machine's own conntrack settings may change, whatever the outcome.
        '--conntrack-max-per-core=0',
        '--conntrack-tcp-timeout-established=0s',
        '--conntrack-tcp-timeout-close-wait=0s',
        '--conntrack-udp-timeout=0s',
        '--conntrack-udp-timeout-stream=0s',
      ],
      { stdout: () => undefined, stderr: (t) => (err += t) },
    );
    expect(code).toBe(1);
    expect(err).toMatch(/^Error: proxy mode "kpts-no-such-backend": package kpts-no-such-backend is not installed/);
    expect(requests).toEqual([]);
  });
});
