import { describe, expect, it } from 'vitest';
import { createFakeClock } from '@kube-proxy-ts/testing';
import { AffinityPool, RoundRobinBalancer, type BalancerEndpoint } from './balancer.js';

const ep = (n: number): BalancerEndpoint => ({ hostPort: `10.0.0.${n}:80`, ip: `10.0.0.${n}`, port: 80 });
const ips = (b: RoundRobinBalancer, client: string | undefined, times: number) =>
  Array.from({ length: times }, () => b.pick(client)?.ip);

describe('RoundRobinBalancer', () => {
  it('picks nothing without endpoints', () => {
    const b = new RoundRobinBalancer({ now: () => 0 });
    expect(b.pick('1.1.1.1')).toBeUndefined();
  });

  it('cycles through the endpoints in order, starting where random() says', () => {
    const b = new RoundRobinBalancer({ now: () => 0, random: () => 0.5 });
    b.setEndpoints([ep(1), ep(2), ep(3), ep(4)]);
    expect(ips(b, 'c', 6)).toEqual(['10.0.0.3', '10.0.0.4', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  });

  it('keeps its position when the same set is given again and wraps when it shrinks', () => {
    const b = new RoundRobinBalancer({ now: () => 0, random: () => 0 });
    b.setEndpoints([ep(1), ep(2), ep(3)]);
    expect(ips(b, undefined, 2)).toEqual(['10.0.0.1', '10.0.0.2']);
    b.setEndpoints([ep(1), ep(2), ep(3)]);
    expect(b.pick(undefined)?.ip).toBe('10.0.0.3');
    b.setEndpoints([ep(1), ep(2)]);
    expect(ips(b, undefined, 3)).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.1']);
  });

  it('never picks an endpoint that left the set', () => {
    const b = new RoundRobinBalancer({ now: () => 0 });
    b.setEndpoints([ep(1), ep(2), ep(3)]);
    b.setEndpoints([ep(1), ep(3)]);
    expect(new Set(ips(b, 'c', 10))).toEqual(new Set(['10.0.0.1', '10.0.0.3']));
  });

  describe('ClientIP affinity', () => {
    it('sends a client to the same endpoint while it keeps coming back within the timeout', () => {
      const clock = createFakeClock();
      const b = new RoundRobinBalancer({ now: clock.now, random: () => 0 });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2), ep(3)]);
      const first = b.pick('192.168.0.7');
      const other = b.pick('192.168.0.8');
      expect(other?.ip).not.toBe(first?.ip);
      for (let i = 0; i < 5; i++) {
        clock.advance(9_000); // each use restarts the timeout
        expect(b.pick('192.168.0.7')).toBe(first);
      }
    });

    it('forgets a client after the timeout and round robin moves on', () => {
      const clock = createFakeClock();
      const b = new RoundRobinBalancer({ now: clock.now, random: () => 0 });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2)]);
      expect(b.pick('c')?.ip).toBe('10.0.0.1');
      clock.advance(10_000);
      expect(b.pick('c')?.ip).toBe('10.0.0.2');
      expect(b.affinityClients()).toBe(1);
      clock.advance(10_000);
      expect(b.pruneAffinity()).toBe(1);
      expect(b.affinityClients()).toBe(0);
    });

    it('moves a client on after a failed connect (resetAffinity) and remembers the new choice', () => {
      const b = new RoundRobinBalancer({ now: () => 0, random: () => 0 });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2)]);
      expect(b.pick('c')?.ip).toBe('10.0.0.1');
      expect(b.pick('c', true)?.ip).toBe('10.0.0.2');
      expect(b.pick('c')?.ip).toBe('10.0.0.2');
    });

    it('drops the pin to an endpoint that was removed, keeps the others', () => {
      const b = new RoundRobinBalancer({ now: () => 0, random: () => 0 });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2)]);
      expect(b.pick('a')?.ip).toBe('10.0.0.1');
      expect(b.pick('b')?.ip).toBe('10.0.0.2');
      b.setEndpoints([ep(2), ep(3)]);
      expect(b.affinityClients()).toBe(1);
      expect(b.pick('b')?.ip).toBe('10.0.0.2');
      expect(b.pick('a')?.ip).not.toBe('10.0.0.1');
    });

    it('turning affinity off forgets every client', () => {
      const b = new RoundRobinBalancer({ now: () => 0, random: () => 0 });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2)]);
      b.pick('a');
      b.setAffinityTimeout(0);
      expect(b.affinityClients()).toBe(0);
      expect(ips(b, 'a', 2)).toEqual(['10.0.0.2', '10.0.0.1']);
    });
  });

  describe('bounded ClientIP affinity', () => {
    const sticky = (options: { affinityLimit?: number; affinityPool?: AffinityPool } = {}) => {
      const b = new RoundRobinBalancer({ now: () => 0, random: () => 0, ...options });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2), ep(3)]);
      return b;
    };

    it('evicts the least recently used pin beyond the service port limit', () => {
      const b = sticky({ affinityLimit: 2 });
      expect(b.pick('a')?.ip).toBe('10.0.0.1');
      expect(b.pick('b')?.ip).toBe('10.0.0.2');
      expect(b.pick('a')?.ip).toBe('10.0.0.1'); // a is now the more recent one
      expect(b.pick('c')?.ip).toBe('10.0.0.3'); // evicts b
      expect(b.affinityClients()).toBe(2);
      expect(b.pick('a')?.ip).toBe('10.0.0.1');
      // b was forgotten: round robin gives it the next endpoint, not its old one.
      expect(b.pick('b')?.ip).toBe('10.0.0.1');
    });

    it('bounds the pins of every service port together, evicting the oldest anywhere', () => {
      const pool = new AffinityPool(3);
      const web = sticky({ affinityPool: pool });
      const api = sticky({ affinityPool: pool });
      web.pick('x');
      web.pick('y');
      api.pick('z');
      api.pick('w'); // the fourth pin: x, the oldest, goes
      expect(pool.size).toBe(3);
      expect(web.affinityClients()).toBe(1);
      expect(api.affinityClients()).toBe(2);
      // A pin in use is not the oldest: y survives the next one.
      web.pick('y');
      api.pick('v');
      expect(web.affinityClients()).toBe(1);
      expect(api.affinityClients()).toBe(2);
    });

    it('gives a service port\'s pins back to the pool when they expire, are turned off or cleared', () => {
      let now = 0;
      const pool = new AffinityPool(100);
      const b = new RoundRobinBalancer({ now: () => now, random: () => 0, affinityPool: pool });
      b.setAffinityTimeout(10_000);
      b.setEndpoints([ep(1), ep(2)]);
      b.pick('a');
      now = 5_000;
      b.pick('b');
      now = 12_000;
      expect(b.pruneAffinity()).toBe(1);
      expect(pool.size).toBe(1);
      b.clearAffinity();
      expect(pool.size).toBe(0);
      b.pick('c');
      b.setAffinityTimeout(0);
      expect(pool.size).toBe(0);
    });

    it('forgetClient() makes the next pick balance the client afresh', () => {
      const b = sticky();
      expect(b.pick('a')?.ip).toBe('10.0.0.1');
      b.forgetClient('a');
      expect(b.pick('a')?.ip).toBe('10.0.0.2');
      expect(b.pick('a')?.ip).toBe('10.0.0.2');
    });

    it('refuses a limit that is not a positive integer', () => {
      expect(() => new RoundRobinBalancer({ now: () => 0, affinityLimit: 0 })).toThrow(/positive integer/);
      expect(() => new AffinityPool(Number.NaN)).toThrow(/positive integer/);
    });
  });
});
