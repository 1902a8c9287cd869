// The built daemon for the drift suites: it runs inside a sandbox's node namespace with
// --manifests (one ClusterIP service over the sandbox's pods) and a short syncPeriod, so that a
// test can remove its rules by hand in that namespace and watch it put them back.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createSandbox, removeLeftoverSandboxes, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';

export const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
export const CLUSTER_IP = '10.96.0.60';
export const MIN_SYNC_MS = 1000;
export const SYNC_MS = 2000;
export const DRIFT_METRIC = 'kubeproxy_sync_proxy_rules_drift_detected_total';

/** Why the suite cannot run here, or undefined. */
export function driftUnsupportedReason(tools: readonly string[]): string | undefined {
  return sandboxUnsupportedReason(tools) ?? (existsSync(CLI) ? undefined : `the daemon is not built (${CLI} is missing: run pnpm build)`);
}

function manifests(sb: Sandbox): string {
  return [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node1' }, spec: { podCIDRs: [sb.plan.podCIDR] }, status: { addresses: [{ type: 'InternalIP', address: sb.node.ip }] } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'drift' },
      spec: { type: 'ClusterIP', clusterIP: CLUSTER_IP, clusterIPs: [CLUSTER_IP], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-1', namespace: 'drift', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: sb.pods.map((p) => ({ addresses: [p.ip], conditions: { ready: true }, nodeName: 'node1' })),
    },
  ]
    .map((d) => stringify(d))
    .join('---\n');
}

export interface DriftDaemon {
  readonly sb: Sandbox;
  /** Everything the daemon printed so far. */
  log(): string;
  /** Resolves once `cond` holds (polled every 100 ms); rejects after `ms` with the log's tail. */
  waitFor(what: string, cond: () => Promise<boolean>, ms: number): Promise<void>;
  /** Whether a new connection from the client to the ClusterIP is answered by a pod. */
  serving(): Promise<boolean>;
  /** The drift counter of IPv4 as /metrics shows it (undefined when absent). */
  driftCount(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** A sandbox with two pods and the daemon in its node namespace, serving once this resolves. */
export async function startDriftDaemon(tag: string, mode: 'iptables' | 'nftables'): Promise<DriftDaemon> {
  await removeLeftoverSandboxes(tag);
  const sb = await createSandbox({ tag, pods: 2 });
  const dir = mkdtempSync(join(tmpdir(), `kpts-${tag}-`));
  const file = join(dir, 'objects.yaml');
  writeFileSync(file, manifests(sb));
  let output = '';
  let child: ChildProcess | undefined;
  const stop = async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child?.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await sb.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  const d: DriftDaemon = {
    sb,
    log: () => output,
    async waitFor(what, cond, ms) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (await cond()) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}; daemon log tail:\n${output.split('\n').slice(-15).join('\n')}`);
    },
    async serving() {
      const r = await sb.tryHttp('client', CLUSTER_IP, 80, { timeoutMs: 1000 });
      return r.ok && sb.pods.some((p) => p.name === r.body.trim());
    },
    async driftCount() {
      const text = await sb.execOk('node', ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
      const line = text.split('\n').find((l) => l.startsWith(`${DRIFT_METRIC}{`) && l.includes('ip_family="IPv4"'));
      return line === undefined ? undefined : Number(line.split(' ').at(-1));
    },
    stop,
  };
  try {
    child = spawn(
      'ip',
      [
        'netns', 'exec', sb.netns('node'), process.execPath, CLI,
        `--manifests=${file}`, `--proxy-mode=${mode}`, '--hostname-override=node1', `--cluster-cidr=${sb.plan.clusterCIDR}`,
        `--iptables-min-sync-period=${MIN_SYNC_MS}ms`, `--iptables-sync-period=${SYNC_MS}ms`,
        '--healthz-bind-address=127.0.0.1:10256', '--metrics-bind-address=127.0.0.1:10249', '--v=2',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    await d.waitFor('the first sync', () => d.serving(), 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return d;
}

/** How often `line` appears in the daemon's log. */
export function occurrences(log: string, line: string): number {
  return log.split(line).length - 1;
}
