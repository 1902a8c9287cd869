// What every source of Services, EndpointSlices and the Node looks like to the daemon.

import type { Logger, ProxyEventHandler } from '@kube-proxy-ts/core';
import type { Registry } from 'prom-client';
import type { ClusterAccess } from './kubeconfig.js';
import type { NodeEventRecorder } from './node-events.js';

/**
 * A running source. It calls the handler as objects come and go, and each `on...Synced` once
 * after its first complete view of that resource.
 */
export interface Source {
  /** Resolves once all three kinds (Services, EndpointSlices, Node) have reported synced. */
  readonly ready: Promise<void>;
  /** Stops watching; no handler call happens after it resolves. */
  stop(): Promise<void>;
  /** Records an Event about this Node, where the source is an API server. */
  readonly recordNodeEvent?: NodeEventRecorder;
}

export interface ManifestSourceOptions {
  /** A file or a directory of `.yaml`, `.yml` and `.json` files (multi-document, `List` kinds). */
  readonly path: string;
  readonly handler: ProxyEventHandler;
  readonly logger: Logger;
  /** This node's name: only a Node of that name is passed on (any Node when unset). */
  readonly nodeName?: string;
  /** How long to wait after a file-system event before re-reading (default 100 ms). */
  readonly debounceMs?: number;
  /** A periodic re-read in case file-system events are missed (default 5 s; 0 disables). */
  readonly rescanIntervalMs?: number;
  /** A changed file is used once it has stayed the same this long, so that a file caught half-written is not applied (default 500 ms). */
  readonly settleMs?: number;
  /** A larger file is refused and its last good objects kept (default 64 MiB). */
  readonly maxFileBytes?: number;
}

/** Timings of the informer watchdog and restart backoff. */
export interface WatchdogOptions {
  /** Restart a watch that has delivered no event (bookmarks included) for this long (default 5 min). */
  readonly idleTimeoutMs?: number;
  /** First restart delay (default 1 s), doubled per consecutive failure up to maxBackoffMs. */
  readonly initialBackoffMs?: number;
  /** Backoff ceiling (default 30 s). */
  readonly maxBackoffMs?: number;
  /** Random extra fraction added to each delay (default 0.5 = up to +50 %). */
  readonly jitter?: number;
  /** timeoutSeconds asked of the server per watch (default: a random 50-90 % of idleTimeoutMs). */
  readonly watchTimeoutSeconds?: number;
}

export interface KubernetesSourceOptions {
  /** Loaded from clientConnection.kubeconfig / --kubeconfig, or in-cluster (see loadClusterAccess). */
  readonly cluster: ClusterAccess;
  /** Only this Node is watched (field selector metadata.name). */
  readonly nodeName: string;
  readonly handler: ProxyEventHandler;
  readonly logger: Logger;
  /** Where kubeproxy_informer_restarts_total{resource} and the rest_client_* series are registered. */
  readonly metrics?: Registry;
  readonly watchdog?: WatchdogOptions;
  /** Objects per list page (default 500). */
  readonly listPageSize?: number;
  /** configSyncPeriod: each informer lists again this often and applies what its watch missed; unset: never. */
  readonly resyncPeriodMs?: number;
  /** clientConnection.qps and burst (client-side rate limit of API calls); none when unset. */
  readonly clientConnection?: { readonly qps: number; readonly burst: number };
}
