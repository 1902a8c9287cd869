import { describe, expect, it } from 'vitest';
import { chainRemovalTransactions } from './sync-plan.js';

describe('chainRemovalTransactions', () => {
  it('removes few chains in one transaction', () => {
    expect(chainRemovalTransactions('nat', ['KUBE-SVC-A', 'KUBE-SEP-B'])).toEqual(['*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-B - [0:0]\n-X KUBE-SVC-A\n-X KUBE-SEP-B\nCOMMIT\n']);
  });

  it('flushes every chain before deleting any when the work spans transactions', () => {
    const chains = ['KUBE-SVC-A', 'KUBE-SEP-B', 'KUBE-SEP-C'];
    const txs = chainRemovalTransactions('nat', chains, 2);
    expect(txs).toHaveLength(4);
    expect(txs.slice(0, 2).join('')).not.toContain('-X');
    expect(txs.slice(2).join('')).toContain('-X KUBE-SEP-C');
    expect(txs.every((t) => (t.match(/^:/gm) ?? []).length <= 2)).toBe(true);
  });
});

describe('planSync', () => {
  it('removes thousands of stale chains after the top-level rewrite, in bounded transactions', async () => {
    const { computeRules } = await import('./rules.js');
    const { planSync } = await import('./sync-plan.js');
    const { Cluster } = await import('./cluster.test-support.js');
    const rules = computeRules(new Cluster().checkpoint().state, {
      masqueradeAll: false, masqueradeBit: 14, localDetector: { kind: 'none', reason: 'test' }, localhostNodePorts: false,
      randomFully: true, conntrackTCPLiberal: false, nodePortsOnAllAddresses: true, nodePortIPs: [], nodeIP: undefined,
    });
    const stale = new Set(Array.from({ length: 4500 }, (_, i) => `KUBE-SEP-${String(i).padStart(16, 'A')}`));
    const plan = planSync({ rules, model: undefined, full: true, changed: new Set(), previous: undefined, kernelServiceChains: stale });
    expect(plan.transactions[0]!.payload).toContain(':KUBE-SERVICES - [0:0]');
    expect(plan.transactions[0]!.payload).not.toContain('-X ');
    const removal = plan.transactions.slice(1);
    expect(removal).toHaveLength(6); // 3 flush + 3 delete steps of at most 2000 chains
    expect(removal.every((t) => (t.payload.match(/^:/gm) ?? []).length <= 2000)).toBe(true);
    expect(plan.stats.chainsDeleted).toBe(4500);
  });
});
