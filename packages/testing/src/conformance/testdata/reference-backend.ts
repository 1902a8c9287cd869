// A tiny in-memory backend used to exercise the conformance kit, and a "data plane" for it
// made of a recording runner that answers a made-up `refplane` command like a kernel would.
//
// The backend programs one entry per service port (its VIPs and chosen endpoints) and, in its
// partial syncs, rewrites only the service ports the ChangeSet names. Flaws can be switched on
// to show that the kit catches them.

import type { Backend, BackendContext, BackendFactory, ChangeSet, Endpoint, ProxyState, ServicePort } from '@kube-proxy-ts/core';
import { createRecordingRunner, type RecordingRunner } from '../../recording-runner.js';

/** A key/value store shared by every runner made from it: one "kernel". */
export interface FakePlane {
  readonly entries: Map<string, unknown>;
  /** A runner whose `refplane` command reads and writes this plane. */
  runner(): RecordingRunner;
}

// refplane dump                -> JSON of every entry
// refplane apply   (stdin)     -> { "set": {key: value}, "delete": [key] }
// refplane flush PREFIX        -> removes entries under PREFIX
export function createFakePlane(): FakePlane {
  const entries = new Map<string, unknown>();
  return {
    entries,
    runner() {
      return createRecordingRunner({ strict: true }).on('refplane', (args, stdin) => {
        const [verb, arg] = args;
        if (verb === 'dump') return { stdout: JSON.stringify(Object.fromEntries(entries)) };
        if (verb === 'apply') {
          const patch = JSON.parse(stdin ?? '{}') as { set?: Record<string, unknown>; delete?: string[] };
          for (const [k, v] of Object.entries(patch.set ?? {})) entries.set(k, v);
          for (const k of patch.delete ?? []) entries.delete(k);
          return {};
        }
        if (verb === 'flush' && arg) {
          for (const k of [...entries.keys()]) if (k.startsWith(arg)) entries.delete(k);
          return {};
        }
        return { code: 2, stderr: `refplane: bad arguments ${args.join(' ')}` };
      });
    },
  };
}

export interface ReferenceFlaws {
  /** Partial syncs forget to remove service ports that disappeared. */
  keepDeletedServices?: boolean;
  /** A node change does not trigger a full sync (topology choices go stale). */
  ignoreNodeChanges?: boolean;
}

const OWN = 'ref/';

/** Ready endpoints, else serving-and-terminating ones; Local policy keeps local ones; zone hints when all have them. */
function chooseEndpoints(sp: ServicePort, all: readonly Endpoint[], state: ProxyState): string[] {
  let eps = all.filter((e) => e.ready);
  if (eps.length === 0) eps = all.filter((e) => e.serving && e.terminating);
  if (sp.internalPolicyLocal) eps = eps.filter((e) => e.isLocal);
  const zone = state.node.zone;
  const topology = sp.topologyMode === 'Auto' || sp.trafficDistribution === 'PreferClose';
  if (topology && zone && eps.length > 0 && eps.every((e) => e.zoneHints)) {
    const inZone = eps.filter((e) => e.zoneHints!.includes(zone));
    if (inZone.length > 0) eps = inZone;
  }
  return eps.map((e) => e.hostPort).sort();
}

function entryFor(sp: ServicePort, state: ProxyState) {
  return {
    vip: `${sp.clusterIP}:${sp.port}/${sp.protocol}`,
    nodePort: sp.nodePort,
    external: [...sp.externalIPs, ...sp.loadBalancerVIPs].sort(),
    sourceRanges: [...sp.loadBalancerSourceRanges].sort(),
    affinity: sp.sessionAffinity.type,
    endpoints: chooseEndpoints(sp, state.endpoints.get(sp.key) ?? [], state),
  };
}

export function referenceBackendFactory(flaws: ReferenceFlaws = {}): BackendFactory {
  return ({ ipFamily }) => {
    let ctx: BackendContext | undefined;
    let programmed = new Set<string>();
    let synced = false;

    const refplane = async (args: string[], stdin?: string) => {
      if (!ctx) throw new Error('reference backend: not started');
      const r = await ctx.runner.run('refplane', args, stdin === undefined ? undefined : { stdin });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stdout;
    };

    const backend: Backend = {
      name: 'reference',
      async start(c) {
        ctx = c;
        await refplane(['apply'], JSON.stringify({ set: { [`${OWN}${ipFamily}/base`]: 'installed' } }));
      },
      async sync(state: ProxyState, changes: ChangeSet) {
        try {
          const full = !synced || (changes.nodeChanged && !flaws.ignoreNodeChanges);
          const keys = full ? new Set([...programmed, ...state.services.keys()]) : changes.servicePorts;
          const set: Record<string, unknown> = {};
          const del: string[] = [];
          for (const key of keys) {
            const sp = state.services.get(key);
            if (sp) {
              set[`${OWN}${ipFamily}/svc/${key}`] = entryFor(sp, state);
              programmed.add(key);
            } else if (full || !flaws.keepDeletedServices) {
              del.push(`${OWN}${ipFamily}/svc/${key}`);
              programmed.delete(key);
            }
          }
          await refplane(['apply'], JSON.stringify({ set, delete: del }));
          synced = true;
          return { ok: true, full, stats: { servicePorts: state.services.size } };
        } catch (e) {
          return { ok: false, full: false, error: e instanceof Error ? e : new Error(String(e)) };
        }
      },
      async cleanup(c) {
        ctx ??= c;
        await refplane(['flush', `${OWN}${ipFamily}/`]);
        programmed = new Set();
        synced = false;
      },
      async inspect() {
        const all = JSON.parse(await refplane(['dump'])) as Record<string, unknown>;
        return Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith(`${OWN}${ipFamily}/`)));
      },
    };
    return backend;
  };
}
