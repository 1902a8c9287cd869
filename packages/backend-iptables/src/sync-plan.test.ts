import { describe, expect, it } from 'vitest';
import { endpointSlice, service } from '@kube-proxy-ts/testing';
import { Cluster } from './cluster.test-support.js';
import { computeRules } from './rules.js';
import { chainRemovalTransactions, commitPlan, planSync } from './sync-plan.js';

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
  it('removes thousands of stale chains after the top-level rewrite, in bounded transactions', () => {
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

describe('planSync: partial syncs', () => {
  const options = {
    masqueradeAll: false, masqueradeBit: 14, localDetector: { kind: 'none', reason: 'test' }, localhostNodePorts: false,
    randomFully: true, conntrackTCPLiberal: false, nodePortsOnAllAddresses: true, nodePortIPs: [], nodeIP: undefined,
  } as const;
  const svc = (n: number) => service('ns1', `svc${n}`, { clusterIP: `172.30.0.${n}`, ports: [{ name: 'p80', port: 80 }] });
  const slice = (n: number, ips: string[]) => endpointSlice('ns1', `svc${n}`, { name: `svc${n}-a`, endpoints: ips, ports: [{ name: 'p80', port: 80 }] });
  /** A cluster of three services, fully synced: the plan's model and rules to start partial syncs from. */
  const synced = () => {
    const cluster = new Cluster().upsert(svc(1), slice(1, ['10.180.0.1']), svc(2), slice(2, ['10.180.0.2']), svc(3), slice(3, ['10.180.0.3']));
    const rules = computeRules(cluster.checkpoint().state, options);
    const plan = planSync({ rules, model: undefined, full: true, changed: new Set(), previous: undefined });
    return { cluster, rules, model: commitPlan(undefined, plan) };
  };

  it('writes nothing when nothing changed', () => {
    const { cluster, rules, model } = synced();
    const next = computeRules(cluster.checkpoint().state, options);
    const plan = planSync({ rules: next, model, full: false, changed: new Set(), previous: rules });
    expect(plan.transactions).toEqual([]);
  });

  it('rewrites the chains of the changed service only, and replaces its old endpoint chain', () => {
    const { cluster, rules, model } = synced();
    const { state, changes } = cluster.upsert(slice(2, ['10.180.0.9'])).checkpoint();
    const plan = planSync({ rules: computeRules(state, options), model, full: false, changed: changes.servicePorts, previous: rules });
    const payload = plan.transactions.map((t) => t.payload).join('');
    expect(plan.stats.servicesWritten).toBe(1);
    expect(payload).toContain('10.180.0.9:80');
    expect(payload).not.toMatch(/10\.180\.0\.[13]:80/);
    // The endpoint chain of 10.180.0.2 goes: flushed and deleted.
    expect(plan.serviceChainsDeleted).toHaveLength(1);
    expect(payload).toContain(`-X ${plan.serviceChainsDeleted[0]}`);
    expect(payload).not.toContain(':KUBE-SERVICES - [0:0]'); // the top level is patched, not rewritten
  });

  it('removes a deleted service: its rule in KUBE-SERVICES and its chains', () => {
    const { cluster, rules, model } = synced();
    const { state, changes } = cluster.deleteService('ns1', 'svc3').deleteSlice('ns1', 'svc3-a').checkpoint();
    const plan = planSync({ rules: computeRules(state, options), model, full: false, changed: changes.servicePorts, previous: rules });
    const payload = plan.transactions.map((t) => t.payload).join('');
    expect(payload).toMatch(/^-D KUBE-SERVICES .*172\.30\.0\.3/m);
    expect(plan.serviceChainsDeleted.length).toBeGreaterThanOrEqual(2); // its KUBE-SVC and KUBE-SEP chains
    const after = commitPlan(model, plan);
    expect([...after.nat.get('KUBE-SERVICES')!].some((r) => r.includes('172.30.0.3'))).toBe(false);
    expect([...after.serviceChains.keys()].filter((c) => plan.serviceChainsDeleted.includes(c))).toEqual([]);
  });
});