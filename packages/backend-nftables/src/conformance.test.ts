import type { Backend, BackendFactory, CommandRunner } from '@kube-proxy-ts/core';
import { describeBackendConformance } from '@kube-proxy-ts/testing';
import { nftablesBackendFactory } from './index.js';
import { NftScriptModel, dataPlaneView } from './nft-script-model.js';
import { NftablesBackend, type NftablesBackendOptions } from './backend.js';
import { HAIRPIN_CONNECTIONS_SET } from './layout.js';

const config = { clusterCIDR: '10.0.0.0/8' };
const seeds = [1, 2, 3, 4, 5, 6, 7, 8];

// inspect() reports what the backend believes it programmed.
describeBackendConformance(nftablesBackendFactory, { config, seeds });

/** A runner that applies every `nft -f` script to `model`, as the kernel would (all or nothing). */
function modelRunner(model: NftScriptModel, fallback: CommandRunner): CommandRunner {
  return {
    async run(command, args, options) {
      if (command !== 'nft') return fallback.run(command, args, options);
      const script = args[0] === '-f' ? String(options?.stdin ?? '') : args[0] === 'delete' ? `${args.join(' ')}\n` : undefined;
      if (script === undefined) return { code: 0, stdout: '', stderr: '' };
      try {
        model.apply(script);
        return { code: 0, stdout: '', stderr: '' };
      } catch (e) {
        return { code: 1, stdout: '', stderr: `Error: ${(e as Error).message}` };
      }
    },
  };
}

/**
 * The model table as the data plane sees it (dataPlaneView): non-empty chains (flushed stale
 * chains are waiting for deletion), sets and maps, without the hairpin connections of endpoints no rule DNATs to any more (they wait for a
 * lazy deletion).
 */
function picture(model: NftScriptModel): unknown {
  const table = model.table('ip', 'kube-proxy');
  if (!table) return null;
  const t = dataPlaneView(table);
  const chains = Object.fromEntries([...t.chains].filter(([, rules]) => rules.length > 0));
  const dnatTargets = (r: string) => [
    ...[...r.matchAll(/dnat to \[?([0-9a-f.:]+?)\]?:(\d+)/g)].map(([, ip, port]) => `${ip}:${port}`),
    ...[...r.matchAll(/\d+ : ([0-9a-f.:]+) \. (\d+)/g)].map(([, ip, port]) => `${ip}:${port}`),
  ];
  const targets = new Set(Object.values(chains).flatMap((rules) => rules.flatMap(dnatTargets)));
  const inUse = (container: string, key: string) => {
    if (container !== HAIRPIN_CONNECTIONS_SET) return true;
    const [ip, , , port] = key.split(' . ');
    return targets.has(`${ip}:${port}`);
  };
  return {
    chains,
    containers: Object.fromEntries(
      [...t.containers].map(([name, c]) => [
        name,
        { spec: c.spec, elements: [...c.elements].filter(([k]) => inUse(name, k)).map(([k, v]) => `${k} ${v.comment ?? ''} ${v.value ?? ''}`).sort() },
      ]),
    ),
  };
}

// The same checks on what the transactions actually do: each instance's scripts are applied to its
// own model table, and inspect() reports that table instead of the backend's bookkeeping.
const throughModel: BackendFactory = (options) => {
  const inner = new NftablesBackend(options as NftablesBackendOptions);
  const model = new NftScriptModel();
  const backend: Backend = {
    name: inner.name,
    start: (ctx) => inner.start({ ...ctx, runner: modelRunner(model, ctx.runner) }),
    sync: (state, changes) => inner.sync(state, changes),
    cleanup: (ctx) => inner.cleanup({ ...ctx, runner: modelRunner(model, ctx.runner) }),
    stop: () => inner.stop(),
    inspect: () => Promise.resolve(picture(model)),
  };
  return backend;
};
describeBackendConformance('nftables transactions on a model table', throughModel, { config, seeds });
