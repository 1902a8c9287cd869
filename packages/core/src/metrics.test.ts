import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { counter, exponentialBuckets } from './metrics.js';

describe('metrics', () => {
  it('returns the same series when two backends ask for it', async () => {
    const registry = new Registry();
    const a = counter(registry, { name: 'sync_proxy_rules_iptables_restore_failures_total', help: 'x', labelNames: ['ip_family'] });
    const b = counter(registry, { name: 'sync_proxy_rules_iptables_restore_failures_total', help: 'x', labelNames: ['ip_family'] });
    a.inc({ ip_family: 'IPv4' });
    b.inc({ ip_family: 'IPv6' });
    expect(a).toBe(b);
    expect(await registry.metrics()).toContain('kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv6"} 1');
  });

  it('builds upstream sync duration buckets', () => {
    const buckets = exponentialBuckets(0.001, 2, 15);
    expect(buckets).toHaveLength(15);
    expect(buckets[0]).toBe(0.001);
    expect(buckets[14]).toBeCloseTo(16.384);
  });
});
