import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { testContext } from './test-context.js';
import { createTestLogger } from './test-logger.js';
import { createRecordingRunner } from './recording-runner.js';

describe('testContext', () => {
  it('builds independent fakes: recording runner, fake clock at 0, fresh registry, node1', async () => {
    const a = testContext();
    const b = testContext();
    expect(a.metrics).not.toBe(b.metrics);
    expect(a.metrics).toBeInstanceOf(Registry);
    expect(a.clock.now()).toBe(0);
    expect(a.node).toMatchObject({ name: 'node1', eligible: true, podCIDRs: [], addresses: [] });
    await a.runner.run('true', []);
    expect(a.runner.calls).toHaveLength(1);
    expect(b.runner.calls).toHaveLength(0);
  });

  it('takes overrides, merging node fields over the defaults', () => {
    const runner = createRecordingRunner({ strict: true });
    const ctx = testContext({ runner, node: { addresses: ['192.168.50.1'], zone: 'zone-a' } });
    expect(ctx.runner).toBe(runner);
    expect(ctx.node).toMatchObject({ name: 'node1', addresses: ['192.168.50.1'], zone: 'zone-a' });
  });
});

describe('createTestLogger', () => {
  it('captures entries of itself and its children with their bindings, printing nothing', () => {
    const logger = createTestLogger();
    logger.info('starting');
    const child = logger.child({ backend: 'iptables' }).child({ ipFamily: 'IPv4' });
    child.warn({ service: 'ns/svc:p80' }, 'skipping service');
    child.error('sync failed');
    expect(logger.entries).toEqual([
      { level: 'info', msg: 'starting', fields: {} },
      { level: 'warn', msg: 'skipping service', fields: { backend: 'iptables', ipFamily: 'IPv4', service: 'ns/svc:p80' } },
      { level: 'error', msg: 'sync failed', fields: { backend: 'iptables', ipFamily: 'IPv4' } },
    ]);
    expect(logger.at('warn')).toHaveLength(1);
    expect(child.at('debug')).toEqual([]);
  });
});
