// Small API-object builders and a fake clock for this package's own tests. (The full builders
// live in @kube-proxy-ts/testing, which depends on this package and so cannot be used here;
// record builders are in ./fixtures.ts, shared with it.)

import type { V1Endpoint, V1EndpointSlice, V1Node, V1Service, V1ServicePort, V1ServiceSpec } from '@kubernetes/client-node';
import type { Clock } from './contract.js';
import type { Endpoint, NodeInfo } from './model.js';
import { endpointRecord } from './fixtures.js';

export function svc(namespace: string, name: string, spec: Partial<V1ServiceSpec> = {}, extra: Partial<V1Service> = {}): V1Service {
  const ports: V1ServicePort[] = spec.ports ?? [{ name: 'p80', port: 80, protocol: 'TCP' }];
  return {
    ...extra,
    metadata: { namespace, name, ...extra.metadata },
    spec: { type: 'ClusterIP', clusterIP: '172.30.0.1', ...spec, ports },
  };
}

export interface EpInput {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
  zone?: string;
  zoneHints?: string[];
  nodeHints?: string[];
}

export function slice(
  namespace: string,
  service: string,
  sliceName: string,
  endpoints: (string | EpInput)[],
  ports: { name?: string; port?: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[] = [{ name: 'p80', port: 80, protocol: 'TCP' }],
  extra: { addressType?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): V1EndpointSlice {
  return {
    metadata: { namespace, name: sliceName, labels: { 'kubernetes.io/service-name': service, ...extra.labels }, annotations: extra.annotations },
    addressType: extra.addressType ?? 'IPv4',
    endpoints: endpoints.map((e): V1Endpoint => {
      const i = typeof e === 'string' ? { ip: e } : e;
      const out: V1Endpoint = { addresses: [i.ip], conditions: { ready: i.ready, serving: i.serving, terminating: i.terminating } };
      if (i.nodeName) out.nodeName = i.nodeName;
      if (i.zone) out.zone = i.zone;
      if (i.zoneHints || i.nodeHints) {
        out.hints = {
          ...(i.zoneHints ? { forZones: i.zoneHints.map((name) => ({ name })) } : {}),
          ...(i.nodeHints ? { forNodes: i.nodeHints.map((name) => ({ name })) } : {}),
        };
      }
      return out;
    }),
    ports: ports.map((p) => ({ ...p })),
  };
}

export function v1Node(name: string, opts: { labels?: Record<string, string>; podCIDRs?: string[]; addresses?: string[]; deleting?: boolean; taints?: string[] } = {}): V1Node {
  return {
    metadata: { name, labels: opts.labels, ...(opts.deleting ? { deletionTimestamp: new Date(0) } : {}) },
    spec: { podCIDRs: opts.podCIDRs, taints: opts.taints?.map((key) => ({ key, effect: 'NoSchedule' })) },
    status: { addresses: opts.addresses?.map((address) => ({ type: 'InternalIP', address })) },
  };
}

/** An Endpoint record from "ip:port" (brackets allowed around IPv6). */
export function ep(hostPort: string, o: Partial<Omit<Endpoint, 'ip' | 'port' | 'hostPort'>> = {}): Endpoint {
  const i = hostPort.lastIndexOf(':');
  return endpointRecord(hostPort.slice(0, i).replace(/^\[|\]$/g, ''), Number(hostPort.slice(i + 1)), o);
}

export function nodeInfo(o: Partial<NodeInfo> = {}): NodeInfo {
  return { name: 'node-a', labels: {}, zone: undefined, podCIDRs: [], addresses: [], eligible: true, ...o };
}

export interface TestClock extends Clock {
  advance(ms: number): Promise<void>;
  pending(): number;
}

/** Time moves only through advance(), which fires due timers in order and lets promises settle. */
export function testClock(start = 0): TestClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const settle = () => new Promise<void>((r) => setImmediate(r));
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
    pending: () => timers.size,
    async advance(ms) {
      const until = now + ms;
      await settle();
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const t of timers) if (t[1].at <= until && (!next || t[1].at < next[1].at)) next = t;
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
        await settle();
      }
      now = until;
    },
  };
}
