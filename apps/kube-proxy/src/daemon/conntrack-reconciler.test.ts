import { createFakeClock, createRecordingRunner } from '@kube-proxy-ts/testing';
import { deleteConntrackFlows } from '@kube-proxy-ts/netfilter';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ConntrackReconcilerMetrics } from './conntrack-reconciler.js';
import { daemonMetrics } from './metrics.js';

const DELETED = (n: number) => ({ code: 0, stdout: '', stderr: `conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been deleted.\n` });

async function values(registry: Registry, name: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await registry.getSingleMetric(name)?.get())?.values ?? []) {
    const metricName = (v as { metricName?: string }).metricName;
    if (metricName === undefined || metricName.endsWith('_count') || metricName.endsWith('_sum')) out[`${metricName ?? name}{${String(v.labels.ip_family)}}`] = v.value;
  }
  return out;
}

describe('ConntrackReconcilerMetrics', () => {
  it('records one reconcile per family sync that deleted flows: total time and entries, per family', async () => {
    const registry = new Registry();
    const clock = createFakeClock(0);
    const inner = createRecordingRunner()
      .on('conntrack', async (args) => {
        clock.advance(args.includes('ipv6') ? 40 : 10);
        return args.includes('ipv6') ? DELETED(1) : DELETED(2);
      })
      // Nothing matched: a failure exit, nothing deleted.
      .on('conntrack', { code: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' }, (args) => args.includes('10.96.0.99'));
    const reconciler = new ConntrackReconcilerMetrics(daemonMetrics(registry), clock);
    const runner = reconciler.runner(inner);

    await deleteConntrackFlows(runner, 'IPv4', [{ protocol: 'udp', origDst: '10.96.0.10' }, { protocol: 'udp', origDst: '10.96.0.11' }, { protocol: 'udp', origDst: '10.96.0.99' }]);
    await deleteConntrackFlows(runner, 'IPv6', [{ protocol: 'udp', origDst: 'fd00::10' }]);
    // Other commands pass through untimed.
    await runner.run('iptables-save', []);
    reconciler.syncEnded('IPv4');
    reconciler.syncEnded('IPv6');
    // A sync that deleted nothing ran no command, and is no reconcile.
    reconciler.syncEnded('IPv4');

    expect(await values(registry, 'kubeproxy_conntrack_reconciler_deleted_entries_total')).toEqual({ 'kubeproxy_conntrack_reconciler_deleted_entries_total{IPv4}': 4, 'kubeproxy_conntrack_reconciler_deleted_entries_total{IPv6}': 1 });
    expect(await values(registry, 'kubeproxy_conntrack_reconciler_sync_duration_seconds')).toEqual({
      'kubeproxy_conntrack_reconciler_sync_duration_seconds_sum{IPv4}': 0.02,
      'kubeproxy_conntrack_reconciler_sync_duration_seconds_count{IPv4}': 1,
      'kubeproxy_conntrack_reconciler_sync_duration_seconds_sum{IPv6}': 0.04,
      'kubeproxy_conntrack_reconciler_sync_duration_seconds_count{IPv6}': 1,
    });
    expect(inner.callsTo('iptables-save')).toHaveLength(1);
  });

  it('counts the time of a conntrack that could not run, and lets its error through', async () => {
    const registry = new Registry();
    const clock = createFakeClock(0);
    const reconciler = new ConntrackReconcilerMetrics(daemonMetrics(registry), clock);
    const runner = reconciler.runner(createRecordingRunner({ strict: true }));
    await expect(runner.run('conntrack', ['-D', '-f', 'ipv4', '-p', 'udp'])).rejects.toThrow();
    reconciler.syncEnded('IPv4');
    expect(await values(registry, 'kubeproxy_conntrack_reconciler_deleted_entries_total')).toEqual({ 'kubeproxy_conntrack_reconciler_deleted_entries_total{IPv4}': 0 });
  });
});
