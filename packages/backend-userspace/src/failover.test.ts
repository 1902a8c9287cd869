import { describe, expect, it } from 'vitest';
import { RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';
import { dialWithFailover } from './failover.js';
import { ENDPOINT_DIAL_TIMEOUTS_MS } from './layout.js';

const ep = (n: number): BalancerEndpoint => ({ hostPort: `10.0.0.${n}:80`, ip: `10.0.0.${n}`, port: 80 });

function balancer(n: number) {
  const b = new RoundRobinBalancer({ now: () => 0, random: () => 0 });
  b.setEndpoints(Array.from({ length: n }, (_, i) => ep(i + 1)));
  return b;
}

describe('dialWithFailover', () => {
  it('uses upstream\'s escalating timeouts 250 ms, 500 ms, 1 s, 2 s', () => {
    expect(ENDPOINT_DIAL_TIMEOUTS_MS).toEqual([250, 500, 1000, 2000]);
  });

  it('skips dead endpoints with growing timeouts and reports each failure', async () => {
    const b = balancer(3);
    const attempts: Array<[string, number]> = [];
    const failed: string[] = [];
    const result = await dialWithFailover({
      pick: (reset) => b.pick('client', reset),
      dial: async (e, timeoutMs) => {
        attempts.push([e.ip, timeoutMs]);
        if (e.ip !== '10.0.0.3') throw new Error('ECONNREFUSED');
        return 'conn';
      },
      onFailure: (e) => failed.push(e.ip),
    });
    expect(result).toEqual({ kind: 'connected', endpoint: ep(3), conn: 'conn', failures: 2 });
    expect(attempts).toEqual([['10.0.0.1', 250], ['10.0.0.2', 500], ['10.0.0.3', 1000]]);
    expect(failed).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('gives up after the last timeout with the last error', async () => {
    const b = balancer(2);
    let n = 0;
    const result = await dialWithFailover({
      pick: (reset) => b.pick(undefined, reset),
      dial: async () => {
        throw new Error(`fail ${++n}`);
      },
    });
    expect(result.kind).toBe('failed');
    expect(result.failures).toBe(4);
    expect(result.kind === 'failed' && result.error.message).toBe('fail 4');
  });

  it('reports no endpoints without dialing', async () => {
    let dialed = false;
    const result = await dialWithFailover({
      pick: () => undefined,
      dial: async () => {
        dialed = true;
        return 1;
      },
    });
    expect(result).toEqual({ kind: 'no-endpoints', failures: 0 });
    expect(dialed).toBe(false);
  });

  it('stops when the client went away', async () => {
    const b = balancer(2);
    let gone = false;
    const result = await dialWithFailover({
      pick: (reset) => b.pick(undefined, reset),
      dial: async () => {
        gone = true;
        throw new Error('refused');
      },
      cancelled: () => gone,
    });
    expect(result).toEqual({ kind: 'cancelled', failures: 1 });
  });

  it('with affinity, a failed pinned endpoint is replaced for the client', async () => {
    const b = balancer(2);
    b.setAffinityTimeout(60_000);
    expect(b.pick('c')?.ip).toBe('10.0.0.1');
    const result = await dialWithFailover({
      pick: (reset) => b.pick('c', reset),
      dial: async (e) => {
        if (e.ip === '10.0.0.1') throw new Error('dead');
        return e.ip;
      },
    });
    expect(result.kind === 'connected' && result.conn).toBe('10.0.0.2');
    expect(b.pick('c')?.ip).toBe('10.0.0.2');
  });
});
