import type { Backend, BackendFactory } from '@kube-proxy-ts/core';
import { iptablesCommands } from '@kube-proxy-ts/netfilter';
import { describeBackendConformance } from '@kube-proxy-ts/testing';
import { IptablesBackend } from './backend.js';
import { IptablesKernelModel } from './kernel-model.test-support.js';
import { ORDER_FREE_CHAINS } from './sync-plan.js';

const v4 = { config: { clusterCIDR: '10.0.0.0/8' } };
const v6 = { ipFamily: 'IPv6' as const, config: { clusterCIDR: 'fd00:10::/48' } };

// inspect() pictures the rules the backend believes the kernel holds after its transactions.
describeBackendConformance((options) => new IptablesBackend({ ...options, flavour: 'nft' }), v4);
describeBackendConformance((options) => new IptablesBackend({ ...options, flavour: 'nft' }), v6);

/**
 * The same checks on what the backend wrote: its restore payloads and iptables commands go to a
 * model of the kernel's tables, and inspect() pictures that model (order-free chains sorted, as
 * the backend's own picture), so a payload that is wrong, or written in the wrong order, fails.
 */
const throughKernelModel: BackendFactory = (options) => {
  const inner = new IptablesBackend({ ...options, flavour: 'nft' });
  const model = new IptablesKernelModel();
  const commands = iptablesCommands('nft', options.ipFamily);
  const backend: Backend = {
    name: inner.name,
    start: (ctx) => inner.start({ ...ctx, runner: model.runner(commands, ctx.runner) }),
    sync: (state, changes) => inner.sync(state, changes),
    cleanup: (ctx) => inner.cleanup({ ...ctx, runner: model.runner(commands, ctx.runner) }),
    inspect: () => Promise.resolve(picture(model)),
  };
  return backend;
};

function picture(model: IptablesKernelModel): unknown {
  const out: Record<string, Record<string, string[]>> = {};
  for (const [table, chains] of Object.entries(model.snapshot())) {
    out[table] = {};
    for (const chain of Object.keys(chains).sort()) {
      const rules = chains[chain]!;
      out[table][chain] = ORDER_FREE_CHAINS.has(`${table}/${chain}`) ? orderFree(table, chain, rules) : rules;
    }
  }
  return out;
}

/** Sorted, except nat KUBE-SERVICES' jump to KUBE-NODEPORTS, which must stay last. */
function orderFree(table: string, chain: string, rules: readonly string[]): string[] {
  const last = table === 'nat' && chain === 'KUBE-SERVICES' ? rules.filter((r) => r.endsWith('-j KUBE-NODEPORTS')) : [];
  return [...rules.filter((r) => !last.includes(r)).sort(), ...last];
}

describeBackendConformance('iptables payloads applied to a kernel model', throughKernelModel, v4);
describeBackendConformance('iptables payloads applied to a kernel model', throughKernelModel, v6);
