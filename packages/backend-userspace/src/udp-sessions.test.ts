import { describe, expect, it } from 'vitest';
import { createFakeClock } from '@kube-proxy-ts/testing';
import { UdpSessionTable } from './udp-sessions.js';

class FakeSession {
  closed = 0;
  close() {
    this.closed++;
  }
}

describe('UdpSessionTable', () => {
  it('closes a session after the idle timeout, not before', () => {
    const clock = createFakeClock();
    const expired: string[] = [];
    const table = new UdpSessionTable<FakeSession>(250, clock, (key) => expired.push(key));
    const s = table.add('1.2.3.4|5000', new FakeSession());
    clock.advance(249);
    expect(table.get('1.2.3.4|5000')).toBe(s);
    clock.advance(1);
    expect(table.size).toBe(0);
    expect(s.closed).toBe(1);
    expect(expired).toEqual(['1.2.3.4|5000']);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('traffic restarts the idle period, with one timer per session', () => {
    const clock = createFakeClock();
    const table = new UdpSessionTable<FakeSession>(250, clock);
    const s = table.add('a', new FakeSession());
    for (let i = 0; i < 10; i++) {
      clock.advance(200);
      table.touch('a');
    }
    expect(clock.pendingTimers()).toBe(1);
    expect(s.closed).toBe(0);
    clock.advance(249);
    expect(s.closed).toBe(0);
    clock.advance(1);
    expect(s.closed).toBe(1);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('keeps sessions per client address apart', () => {
    const clock = createFakeClock();
    const table = new UdpSessionTable<FakeSession>(1000, clock);
    const a = table.add('a', new FakeSession());
    clock.advance(600);
    const b = table.add('b', new FakeSession());
    clock.advance(400);
    expect(a.closed).toBe(1);
    expect(b.closed).toBe(0);
    expect(table.size).toBe(1);
  });

  it('replacing, deleting and closing all release sessions and timers', () => {
    const clock = createFakeClock();
    const table = new UdpSessionTable<FakeSession>(1000, clock);
    const first = table.add('a', new FakeSession());
    const second = table.add('a', new FakeSession());
    expect(first.closed).toBe(1);
    expect(table.get('a')).toBe(second);
    const others = ['b', 'c', 'd'].map((k) => table.add(k, new FakeSession()));
    expect(table.deleteWhere((_s, key) => key === 'b' || key === 'c')).toBe(2);
    expect(table.delete('a')).toBe(true);
    expect(table.delete('a')).toBe(false);
    table.closeAll();
    expect(table.size).toBe(0);
    expect([second, ...others].map((s) => s.closed)).toEqual([1, 1, 1, 1]);
    expect(clock.pendingTimers()).toBe(0);
  });
});
