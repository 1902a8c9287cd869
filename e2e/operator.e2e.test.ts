// What an operator replacing upstream kube-proxy sees, from the built binary on a real kernel (inside
// a sandbox's node namespace): a kubeadm ConfigMap's config.conf is used unchanged, the logs are
// klog's text lines by default and component-base's JSON lines with --logging-format=json, the
// default verbosity shows the start, the first sync and nothing per sync, -v=2 adds a line per sync,
// and --init-only applies the node settings and exits.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createSandbox, endpointSlice, node, sandboxUnsupportedReason, service, type Sandbox } from '@kube-proxy-ts/testing';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
const CLUSTER_IP = '10.96.0.60';

// config.conf of the kube-proxy ConfigMap as a kubeadm cluster has it.
const KUBEADM_CONFIG_CONF = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16
mode: "iptables"
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 0s
  syncPeriod: 30s
`;

// klog: severity, MMDD hh:mm:ss.micros, thread id in 7 columns, file:line] "message" key=value...
const KLOG_LINE = /^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} [ \d]{7} [^\s:\]]+:\d+\] "(?:[^"\\]|\\.)*"( [A-Za-z][\w.]*=\S.*)?$/;

function unsupportedReason(): string | undefined {
  const sb = sandboxUnsupportedReason(['iptables-restore']);
  if (sb) return sb;
  if (!existsSync(CLI)) return `the daemon is not built (${CLI} is missing: run pnpm build)`;
  return undefined;
}

const unsupported = unsupportedReason();
if (unsupported) console.log(`operator e2e skipped: ${unsupported}`);

describe.skipIf(unsupported !== undefined)('operator view of the built daemon (kubeadm config.conf, iptables mode)', () => {
  let sb: Sandbox;
  let dir: string;
  let configFile: string;
  let manifestFile: string;

  beforeAll(async () => {
    sb = await createSandbox({ tag: 'opr', pods: 1 });
    dir = mkdtempSync(join(tmpdir(), 'kpts-opr-'));
    configFile = join(dir, 'config.conf');
    manifestFile = join(dir, 'objects.yaml');
    writeFileSync(configFile, KUBEADM_CONFIG_CONF);
    const pod = sb.pods[0] as Sandbox['pods'][number];
    const objects = [
      node('node1', { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] }),
      service('e2e', 'web', { clusterIP: CLUSTER_IP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      endpointSlice('e2e', 'web', { endpoints: [{ ip: pod.ip, nodeName: 'node1' }], ports: [{ name: 'http', port: 8080 }] }),
    ];
    writeFileSync(manifestFile, objects.map((o) => stringify(o)).join('---\n'));
  });

  afterAll(async () => {
    await sb?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the daemon until its first sync is logged and the ClusterIP answers, then stops it with SIGTERM. */
  async function runUntilFirstSync(extra: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
    const child = spawn(
      'ip',
      ['netns', 'exec', sb.netns('node'), process.execPath, CLI, `--config=${configFile}`, `--manifests=${manifestFile}`, '--hostname-override=node1', ...extra],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const end = Date.now() + 30_000;
      while (!stderr.includes('First sync done')) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`no first sync; daemon output:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const probe = await sb.tryHttp('client', CLUSTER_IP, 80, { timeoutMs: 2000 });
      expect(probe.body.trim(), 'the ClusterIP answers from the pod').toBe('pod1');
      // One more sync period's worth of time would add per-sync lines at -v=2; the first one suffices.
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    return { stdout, stderr, code };
  }

  // First, while the namespace has no rules of ours.
  it('--init-only applies route_localnet and the conntrack timeouts in its namespace, programs nothing and exits 0', async () => {
    await sb.execOk('node', ['sysctl', '-qw', 'net.ipv4.conf.all.route_localnet=0']);
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('ip', ['netns', 'exec', sb.netns('node'), process.execPath, CLI, `--config=${configFile}`, '--init-only'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('"System initialized and --init-only specified"');
    expect((await sb.execOk('node', ['sysctl', '-n', 'net.ipv4.conf.all.route_localnet'])).trim()).toBe('1');
    expect((await sb.execOk('node', ['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_timeout_established'])).trim()).toBe('86400');
    // No rules: --init-only programs nothing.
    expect(await sb.execOk('node', ['iptables-save'])).not.toContain('KUBE-');
  });

  it('text (the default): klog lines on stderr; start, first sync and nothing per sync at -v=0', async () => {
    const { stdout, stderr, code } = await runUntilFirstSync([]);
    expect(code).toBe(0);
    expect(stdout).toBe('');
    const lines = stderr.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) expect(l).toMatch(KLOG_LINE);
    expect(lines.find((l) => l.includes('"Sources synced; starting the proxy"'))).toMatch(/^I.* mode="iptables" ipFamilies=\["IPv4"\]/);
    // The call site names our source file (the CLI maps stack frames to TypeScript).
    expect(lines.find((l) => l.includes('"First sync done"'))).toMatch(/^I.* family-proxier\.ts:\d+\] "First sync done" .*ipFamily="IPv4" services=1 servicePorts=1 endpoints=1 durationMs=\d+/);
    expect(stderr).not.toContain('SyncProxyRules complete');
  });

  it('--logging-format=json -v=2: one JSON object per line with ts (ms), caller, msg, v; a line per sync', async () => {
    const before = Date.now();
    const { stdout, stderr, code } = await runUntilFirstSync(['--logging-format=json', '-v=2']);
    expect(code).toBe(0);
    expect(stdout).toBe('');
    const records = stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const r of records) {
      expect(r).toMatchObject({ ts: expect.any(Number), caller: expect.stringMatching(/^[\w.-]+\/[\w.-]+:\d+$/), msg: expect.any(String) });
      expect(r.ts as number).toBeGreaterThanOrEqual(before - 1000);
      expect(r.ts as number).toBeLessThanOrEqual(Date.now() + 1000);
      expect(r).not.toHaveProperty('level');
    }
    expect(records.find((r) => r.msg === 'First sync done')).toMatchObject({ v: 0, ipFamily: 'IPv4', services: 1, endpoints: 1 });
    expect(records.find((r) => r.msg === 'SyncProxyRules complete')).toMatchObject({ v: 2, ipFamily: 'IPv4', full: true });
  });
});
