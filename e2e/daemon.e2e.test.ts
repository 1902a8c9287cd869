// The built kube-proxy binary on a real kernel: it runs inside a sandbox's node namespace with
// --manifests, follows edits of the manifest file within minSyncPeriod + 1 s, and its /healthz
// turns 503 while syncs fail (a rule the kernel refuses) and back to 200 once they succeed again.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createSandbox, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
const CLUSTER_IP = '10.96.0.50';
const MIN_SYNC_MS = 1000;
const SYNC_MS = 2000;

function unsupportedReason(): string | undefined {
  const sb = sandboxUnsupportedReason(['iptables-restore']);
  if (sb) return sb;
  if (!existsSync(CLI)) return `the daemon is not built (${CLI} is missing: run pnpm build)`;
  return undefined;
}

const unsupported = unsupportedReason();
if (unsupported) console.log(`daemon e2e skipped: ${unsupported}`);

function manifests(sb: Sandbox, podNames: string[]): string {
  const pods = sb.pods.filter((p) => podNames.includes(p.name));
  return [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node1' }, spec: { podCIDRs: [sb.plan.podCIDR] }, status: { addresses: [{ type: 'InternalIP', address: sb.node.ip }] } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'e2e' },
      spec: { type: 'ClusterIP', clusterIP: CLUSTER_IP, clusterIPs: [CLUSTER_IP], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-1', namespace: 'e2e', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: pods.map((p) => ({ addresses: [p.ip], conditions: { ready: true }, nodeName: 'node1' })),
    },
  ]
    .map((d) => stringify(d))
    .join('---\n');
}

describe.skipIf(unsupported !== undefined)('kube-proxy daemon (built binary, iptables mode, --manifests)', () => {
  let sb: Sandbox;
  let dir: string;
  let file: string;
  let daemon: ChildProcess | undefined;
  let log = '';

  const healthz = async () => {
    const r = await sb.exec('node', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', 'http://127.0.0.1:10256/healthz'], { timeoutMs: 5000 });
    return r.stdout.trim();
  };
  const waitFor = async (what: string, cond: () => Promise<boolean>, ms: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${ms} ms waiting for ${what}; daemon log tail:\n${log.split('\n').slice(-15).join('\n')}`);
  };
  const answers = async (n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await sb.tryHttp('client', CLUSTER_IP, 80, { timeoutMs: 1000 });
      out.push(r.ok ? r.body.trim() : 'fail');
    }
    return out;
  };

  beforeAll(async () => {
    sb = await createSandbox({ tag: 'dmn', pods: 3 });
    dir = mkdtempSync(join(tmpdir(), 'kpts-dmn-'));
    file = join(dir, 'objects.yaml');
    writeFileSync(file, manifests(sb, ['pod1']));
    daemon = spawn(
      'ip',
      [
        'netns', 'exec', sb.netns('node'), process.execPath, CLI,
        `--manifests=${file}`, '--proxy-mode=iptables', '--hostname-override=node1', `--cluster-cidr=${sb.plan.clusterCIDR}`,
        `--iptables-min-sync-period=${MIN_SYNC_MS}ms`, `--iptables-sync-period=${SYNC_MS}ms`,
        '--healthz-bind-address=127.0.0.1:10256', '--metrics-bind-address=127.0.0.1:10249', '--v=2',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    daemon.stdout?.on('data', (b: Buffer) => (log += b.toString()));
    daemon.stderr?.on('data', (b: Buffer) => (log += b.toString()));
    await waitFor('the first sync', async () => (await answers(1))[0] === 'pod1', 30_000);
  });

  afterAll(async () => {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await Promise.race([new Promise((r) => daemon?.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
    await sb?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('traffic follows an edit of the manifest file within minSyncPeriod + 1 s', async () => {
    expect(await answers(3)).toEqual(['pod1', 'pod1', 'pod1']);
    const edited = Date.now();
    writeFileSync(file, manifests(sb, ['pod2']));
    await waitFor('traffic to reach pod2', async () => (await answers(1))[0] === 'pod2', MIN_SYNC_MS + 1000);
    const followedMs = Date.now() - edited;
    console.log(`daemon e2e: traffic followed the manifest edit after ${followedMs} ms (bound ${MIN_SYNC_MS + 1000} ms)`);
    expect(await answers(3)).toEqual(['pod2', 'pod2', 'pod2']);
    expect(await healthz()).toBe('200');
  });

  it('/healthz turns 503 while the kernel refuses the sync, and 200 once it succeeds again', async () => {
    // pod2's KUBE-SEP chain: referenced from a foreign rule, the kernel refuses to delete it.
    const save = await sb.execOk('node', ['iptables-save', '-t', 'nat'], { timeoutMs: 10_000 });
    const sep = /-A (KUBE-SEP-[A-Z0-9]+) .*--to-destination 10\.244\.1\.12:8080/.exec(save)?.[1];
    expect(sep, 'the endpoint chain of pod2').toBeDefined();
    const foreign = ['OUTPUT', '-d', '203.0.113.1/32', '-p', 'tcp', '-j', sep as string];
    await sb.execOk('node', ['iptables', '-w', '5', '-t', 'nat', '-I', ...foreign], { timeoutMs: 10_000 });
    try {
      writeFileSync(file, manifests(sb, ['pod3']));
      // Unhealthy once the change has waited longer than 2 x syncPeriod without a successful sync.
      await waitFor('/healthz 503', async () => (await healthz()) === '503', 2 * SYNC_MS + 4000);
      expect(log).toMatch(/Failed to sync proxy rules/);
    } finally {
      await sb.execOk('node', ['iptables', '-w', '5', '-t', 'nat', '-D', ...foreign], { timeoutMs: 10_000 });
    }
    await waitFor('/healthz 200', async () => (await healthz()) === '200', SYNC_MS + 3000);
    expect(await answers(2)).toEqual(['pod3', 'pod3']);
    const metrics = await sb.execOk('node', ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
    expect(metrics).toMatch(/kubeproxy_proxy_healthz_total\{code="503"\} [1-9]/);
    expect(metrics).toMatch(/kubeproxy_sync_proxy_rules_iptables_restore_failures_total(\{[^}]*\})? [1-9]/);
  });

  it('exits on SIGTERM without removing its rules', async () => {
    daemon?.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => (daemon?.exitCode !== null ? r(daemon?.exitCode ?? null) : daemon.once('exit', (c) => r(c))));
    expect(code).toBe(0);
    expect(await answers(1)).toEqual(['pod3']);
    expect(readFileSync(file, 'utf8')).toContain('10.244.1.13');
  });
});
