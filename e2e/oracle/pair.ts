// Two node namespaces with identical addressing, one running upstream's kube-proxy and the other
// ours, both fed by the same real kube-apiserver (in a third namespace, reached through relays)
// with the same configuration file, node name and credentials. Used by the differential e2e and
// by bench/upstream.ts.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, DiscoveryV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { createSandbox, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';
import { stringify } from 'yaml';
import { type ApiServer, ControlPlane, NetnsProcess, kubernetesBinariesMissing, kubernetesVersion, waitUntil } from '../real-cluster.js';

export const CLI = fileURLToPath(new URL('../../apps/kube-proxy/dist/cli.js', import.meta.url));
export const NODE_NAME = 'node1';
export const SERVICE_CIDRS = ['10.96.0.0/16', 'fd00:10:96::/112'] as const;
export type ProxyMode = 'iptables' | 'nftables';
export type Side = 'upstream' | 'ours';
export const SIDES: readonly Side[] = ['upstream', 'ours'];

/** Why the pair cannot run here, or undefined. */
export function pairUnsupportedReason(): string | undefined {
  const sandbox = sandboxUnsupportedReason(['iptables-save', 'ip6tables-save', 'nft', 'openssl', 'curl']);
  if (sandbox) return sandbox;
  const binaries = kubernetesBinariesMissing();
  if (binaries) return `Kubernetes ${kubernetesVersion()} is not built: ${binaries}`;
  try {
    readFileSync(CLI);
  } catch {
    return `the daemon is not built (${CLI} is missing: run pnpm build)`;
  }
  return undefined;
}

export interface PairOptions {
  /** Namespace tag prefix, 1-8 of [a-z0-9]. */
  tag: string;
  /** Add IPv6 addresses to the nodes (dual-stack). */
  ipv6: boolean;
  /** Pod namespaces per node (addresses only: no servers run). */
  pods?: number;
}

export interface DaemonOptions {
  mode: ProxyMode;
  /** iptables/nftables minSyncPeriod (default 1s, upstream's). */
  minSyncPeriod?: string;
  syncPeriod?: string;
  /** Extra log verbosity. */
  verbosity?: number;
}

/** The same KubeProxyConfiguration for both daemons. */
export function proxyConfig(kubeconfig: string, clusterCIDR: string, options: DaemonOptions): Record<string, unknown> {
  const periods = { syncPeriod: options.syncPeriod ?? '30s', minSyncPeriod: options.minSyncPeriod ?? '1s' };
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig, qps: 50, burst: 100 },
    mode: options.mode,
    clusterCIDR,
    healthzBindAddress: '0.0.0.0:10256',
    metricsBindAddress: '127.0.0.1:10249',
    // nf_conntrack_max and the timeouts are the host's business in a namespace: leave them alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    iptables: { ...periods, localhostNodePorts: true, masqueradeBit: 14 },
    nftables: { ...periods, masqueradeBit: 14 },
    oomScoreAdj: 0,
  };
}

export class DaemonPair {
  readonly dir = mkdtempSync(join(tmpdir(), 'kpts-oracle-'));
  cp!: ControlPlane;
  api!: ApiServer;
  core!: CoreV1Api;
  discovery!: DiscoveryV1Api;
  readonly nodes = new Map<Side, Sandbox>();
  readonly daemons = new Map<Side, NetnsProcess>();
  private controlNs!: Sandbox;
  private kubeconfig = '';
  private started = 0;

  private constructor(readonly options: PairOptions) {}

  static async start(options: PairOptions): Promise<DaemonPair> {
    const pair = new DaemonPair(options);
    try {
      await pair.setUp();
    } catch (err) {
      await pair.stop();
      throw err;
    }
    return pair;
  }

  get clusterCIDR(): string {
    const plan = this.node('ours').plan;
    return this.options.ipv6 ? `${plan.clusterCIDR},${plan.ipv6.clusterCIDR}` : plan.clusterCIDR;
  }

  node(side: Side): Sandbox {
    const sb = this.nodes.get(side);
    if (!sb) throw new Error(`no ${side} node`);
    return sb;
  }

  private async setUp(): Promise<void> {
    const { tag, ipv6 } = this.options;
    this.controlNs = await createSandbox({ tag: `${tag}cp`, pods: 1, servers: false });
    for (const side of SIDES) {
      this.nodes.set(side, await createSandbox({ tag: `${tag}${side === 'ours' ? 'us' : 'up'}`, pods: this.options.pods ?? 3, servers: false, ipv6 }));
    }
    const serviceCIDR = ipv6 ? SERVICE_CIDRS.join(',') : SERVICE_CIDRS[0];
    this.cp = await ControlPlane.start({ netns: this.controlNs.netns('node'), dir: this.dir, advertiseAddress: this.controlNs.node.ip, serviceCIDR, auditedUsers: [] });
    this.api = await this.cp.startApiServer('api');
    for (const side of SIDES) await this.cp.exposeApiServer(this.api, this.node(side).netns('node'));
    const kc = this.cp.adminKubeConfig(this.api);
    this.core = kc.makeApiClient(CoreV1Api);
    this.discovery = kc.makeApiClient(DiscoveryV1Api);

    // Both daemons authenticate as one service account bound to upstream's system:node-proxier.
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await waitUntil('namespace kube-system', async () => (await this.core.readNamespace({ name: 'kube-system' })).metadata?.name === 'kube-system', 30_000);
    await waitUntil('ClusterRole system:node-proxier', async () => (await rbac.readClusterRole({ name: 'system:node-proxier' })).rules !== undefined, 30_000);
    await this.core.createNamespacedServiceAccount({ namespace: 'kube-system', body: { metadata: { name: 'kube-proxy' } } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'kube-proxy' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node-proxier' },
        subjects: [{ kind: 'ServiceAccount', name: 'kube-proxy', namespace: 'kube-system' }],
      },
    });
    const r = await this.core.createNamespacedServiceAccountToken({ namespace: 'kube-system', name: 'kube-proxy', body: { spec: { audiences: [], expirationSeconds: 7200 } } });
    if (!r.status?.token) throw new Error('no token for kube-system/kube-proxy');
    this.kubeconfig = this.cp.writeKubeconfig(join(this.dir, 'kube-proxy.kubeconfig'), this.api, 'kube-proxy', r.status.token);
  }

  /** Starts the daemon of `side` with the shared configuration (stopping a running one first). */
  async startDaemon(side: Side, options: DaemonOptions): Promise<NetnsProcess> {
    await this.stopDaemon(side);
    const n = ++this.started;
    const config = join(this.dir, `config-${n}-${side}.yaml`);
    writeFileSync(config, stringify(proxyConfig(this.kubeconfig, this.clusterCIDR, options)));
    const argv =
      side === 'upstream'
        ? [join(this.cp.binDir, 'kube-proxy'), `--config=${config}`, `--hostname-override=${NODE_NAME}`, `--v=${options.verbosity ?? 2}`]
        : [CLI, `--config=${config}`, `--hostname-override=${NODE_NAME}`, `--v=${options.verbosity ?? 2}`];
    const d = new NetnsProcess(`kube-proxy-${side}`, this.node(side).netns('node'), argv, join(this.dir, `daemon-${n}-${side}-${options.mode}.log`));
    this.daemons.set(side, d);
    return d;
  }

  async stopDaemon(side: Side): Promise<void> {
    await this.daemons.get(side)?.stop();
    this.daemons.delete(side);
  }

  /** Runs `kube-proxy --cleanup` of `side` in its node (removes every mode's rules). */
  async cleanup(side: Side): Promise<void> {
    const argv = side === 'upstream' ? [join(this.cp.binDir, 'kube-proxy'), '--cleanup'] : [CLI, '--cleanup'];
    await this.node(side).execOk('node', argv, { timeoutMs: 60_000 });
  }

  /** The daemon's metrics text, or '' while it does not answer. */
  async metrics(side: Side): Promise<string> {
    const r = await this.node(side).exec('node', ['curl', '-s', '--max-time', '3', 'http://127.0.0.1:10249/metrics'], { timeoutMs: 5000 });
    return r.code === 0 ? r.stdout : '';
  }

  /** Last lines of the daemon's log, for failure messages. */
  log(side: Side, lines = 20): string {
    return `${side}:\n${this.daemons.get(side)?.lastLines(lines) ?? '(not running)'}`;
  }

  /** Throws when a daemon has exited. */
  assertRunning(): void {
    for (const [side, d] of this.daemons) if (!d.running) throw new Error(`${side} kube-proxy exited:\n${d.lastLines(30)}`);
  }

  async stop(): Promise<void> {
    for (const side of SIDES) await this.stopDaemon(side).catch(() => undefined);
    await this.cp?.stop().catch(() => undefined);
    for (const sb of this.nodes.values()) await sb.destroy();
    await this.controlNs?.destroy();
    if (!process.env.KPTS_KEEP_LOGS) rmSync(this.dir, { recursive: true, force: true });
    else console.log(`oracle logs kept in ${this.dir}`);
  }
}

/**
 * A metric's samples in Prometheus text, all label sets (e.g. both IP families) added up, or
 * their maximum (for timestamps); NaN when absent.
 */
export function metricValue(text: string, name: string, reduce: 'sum' | 'max' = 'sum', ipFamily?: 'IPv4' | 'IPv6'): number {
  let out = Number.NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (m?.[1] !== name) continue;
    // Series of the other family are skipped; series without the label count for any.
    if (ipFamily && m[2]?.includes('ip_family=') && !m[2].includes(`ip_family="${ipFamily}"`)) continue;
    const v = Number(m[3]);
    out = Number.isNaN(out) ? v : reduce === 'max' ? Math.max(out, v) : out + v;
  }
  return out;
}
