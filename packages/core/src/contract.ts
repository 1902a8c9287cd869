// The contract between the control loop and a data plane. A backend package's default export
// is a BackendFactory; the daemon creates one Backend per IP family the node has.

import type { Registry } from 'prom-client';
import type { CommandRunner } from './command.js';
import type { ProxyConfig } from './config.js';
import type { ExplainPacket, Explanation, KernelView } from './kernel-view.js';
import type { Endpoint, IPFamily, NodeInfo, ServicePort, ServicePortKey } from './model.js';

/** The logging surface a backend may use; a pino logger satisfies it. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Time and timers, injectable so that tests control them. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The whole desired state for one IP family, as of one checkpoint. */
export interface ProxyState {
  readonly ipFamily: IPFamily;
  readonly services: ReadonlyMap<ServicePortKey, ServicePort>;
  /**
   * All endpoints (ready, serving, terminating) per service port, one per `hostPort`, sorted by
   * `hostPort` as a string (code-unit order: "10.0.0.100:80" < "10.0.0.10:80" < "10.0.0.9:80").
   */
  readonly endpoints: ReadonlyMap<ServicePortKey, readonly Endpoint[]>;
  readonly node: NodeInfo;
  /**
   * The Service CIDRs of this family (the union of the cluster's ServiceCIDR objects), canonical
   * and sorted. Traffic to an address in them that no Service holds may be dropped. Absent: none known.
   */
  readonly serviceCIDRs?: readonly string[];
}

/** A UDP flow a backend should flush from conntrack. */
export interface StaleUDPEndpoint {
  readonly servicePort: ServicePortKey;
  /** The endpoint that went away (or stopped serving). */
  readonly endpoint: Endpoint;
}

/** What moved since the previous checkpoint. */
export interface ChangeSet {
  /** Service ports whose Service or endpoints changed, added ones and deleted ones included. */
  readonly servicePorts: ReadonlySet<ServicePortKey>;
  /** The node's labels, zone, addresses or pod CIDRs changed: topology may select other endpoints. */
  readonly nodeChanged: boolean;
  /** ProxyState.serviceCIDRs changed. */
  readonly serviceCIDRsChanged: boolean;
  /** ClusterIPs of deleted UDP service ports. */
  readonly deletedUDPClusterIPs: ReadonlySet<string>;
  /** UDP endpoints that were removed or stopped serving. */
  readonly staleUDPEndpoints: readonly StaleUDPEndpoint[];
  /** UDP service ports that went from no serving endpoint to at least one. */
  readonly newlyActiveUDPServices: ReadonlySet<ServicePortKey>;
  /**
   * last-change-trigger-times (ms since epoch) of the EndpointSlice updates applied by this
   * checkpoint, for network_programming_duration_seconds. Each changed Service's times appear
   * once, under its first changed service port (so one sample per Service and time, as upstream).
   */
  readonly lastChangeTriggerTimes: ReadonlyMap<ServicePortKey, readonly number[]>;
}

export interface SyncResult {
  readonly ok: boolean;
  /** The sync rewrote everything rather than only what changed. */
  readonly full: boolean;
  readonly error?: Error;
  /** Backend-specific counts for the per-sync log line (rules, chains, bytes, ...). */
  readonly stats?: Readonly<Record<string, number>>;
}

export interface BackendOptions {
  readonly ipFamily: IPFamily;
  readonly config: ProxyConfig;
}

export interface BackendContext {
  readonly logger: Logger;
  readonly metrics: Registry;
  /** The node as known at start; later changes arrive in ProxyState.node. */
  readonly node: NodeInfo;
  readonly runner: CommandRunner;
  readonly clock: Clock;
}

/** Something a backend needs from the machine, checked before it starts or cleans up. */
export type Requirement =
  /** A program, run with `args` (e.g. --version) to see that it is there. */
  | { readonly tool: string; readonly args: readonly string[]; readonly why: string }
  /** A file that must exist, e.g. /proc/net/ip_vs for kernel support. */
  | { readonly path: string; readonly why: string };

export interface Backend {
  /** The mode name, e.g. "iptables". */
  readonly name: string;
  /**
   * What this backend needs on the machine. The daemon checks it before start() and refuses to
   * run with one message naming what is missing; --cleanup skips a backend whose needs are not met.
   */
  readonly requirements?: readonly Requirement[];
  /** Idempotent set-up. Never flushes rules it does not own. */
  start(ctx: BackendContext): Promise<void>;
  /**
   * Program the data plane to `state`. `changes` lists what moved since the previous call; a
   * backend may ignore it and always write everything. Must not throw for bad data: report
   * failures through the result so the caller can retry.
   */
  sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult>;
  /**
   * Remove everything this backend may ever have created, and nothing else. Called on a started
   * backend, or on a fresh one without start() (`kube-proxy --cleanup`): `ctx` is all it gets.
   */
  cleanup(ctx: BackendContext): Promise<void>;
  /** Stop serving (userspace listeners, timers). Rules stay in place. */
  stop?(): Promise<void>;
  /**
   * A canonical, JSON-serialisable picture of the data plane this backend has programmed.
   * The conformance suite compares it after a partial and after a full sync.
   */
  inspect?(): Promise<unknown>;
  /**
   * Reads the data plane back from the kernel (one dump, indexed by service port) for
   * `kube-proxy inspect`. Read-only. Optional: a backend without it is shown without a kernel view.
   */
  kernelView?(servicePorts: readonly ServicePort[]): Promise<KernelView>;
  /**
   * Walks `packet` through the rules the kernel holds (not the backend's model) for
   * `kube-proxy explain`. `node` gives the node's addresses (what counts as local). Read-only.
   */
  explain?(packet: ExplainPacket, node: NodeInfo): Promise<Explanation>;
}

export type BackendFactory = (options: BackendOptions) => Backend;
