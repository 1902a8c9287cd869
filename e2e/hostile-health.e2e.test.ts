// The built kube-proxy on a node whose rule-writing tool always fails (a fake iptables-restore /
// `nft -f` first on the daemon's PATH): its first sync never succeeds, so /healthz and /livez must
// turn 503 within 2 x syncPeriod of the start, and the mode's failure counter must count the
// refused writes. Runs for the iptables and the nftables mode, each in its own sandbox.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createSandbox, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
const CLUSTER_IP = '10.96.0.60';
const SYNC_MS = 2000;
const MIN_SYNC_MS = 500;
/** Slack for scheduling and the probe itself on a loaded 2-core machine. */
const SLACK_MS = 2000;

interface ModeCase {
  readonly mode: 'iptables' | 'nftables';
  readonly tools: readonly string[];
  /** The failure counter of the mode (upstream's name). */
  readonly failureMetric: string;
  /** Writes the fake tools into `dir`, each logging its argv to `callLog`. */
  fakeTools(dir: string, callLog: string): void;
  /** The data plane of the node, to show that the service never got programmed. */
  dump(sb: Sandbox): Promise<string>;
}

function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return join(dir, tool);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function writeTool(dir: string, name: string, body: string): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

/** Logs its argv, drains stdin (the payload) and fails as a refused restore does. */
const refuse = (callLog: string, name: string) =>
  `echo "${name} $*" >> '${callLog}'\ncat > /dev/null\necho "${name}: line 1 failed (this node refuses every write)" >&2\nexit 1`;

const CASES: readonly ModeCase[] = [
  {
    mode: 'iptables',
    tools: ['iptables-restore', 'iptables-save', 'iptables'],
    failureMetric: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
    // Whichever flavour the backend detects, its restore binary is ours.
    fakeTools(dir, callLog) {
      for (const name of ['iptables-restore', 'iptables-nft-restore', 'iptables-legacy-restore']) writeTool(dir, name, refuse(callLog, name));
    },
    dump: (sb) => sb.execOk('node', ['iptables-save'], { timeoutMs: 10_000 }),
  },
  {
    mode: 'nftables',
    tools: ['nft'],
    failureMetric: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
    // Reads go to the real nft; every transaction (`nft -f -`) is refused.
    fakeTools(dir, callLog) {
      const real = which('nft') as string;
      writeTool(dir, 'nft', `case " $* " in *" -f "*)\n${refuse(callLog, 'nft')}\n;;\nesac\nexec '${real}' "$@"`);
    },
    dump: (sb) => sb.execOk('node', ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 }),
  },
];

function manifests(sb: Sandbox): string {
  const pod = sb.pods[0];
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
      endpoints: [{ addresses: [pod?.ip], conditions: { ready: true }, nodeName: 'node1' }],
    },
  ]
    .map((d) => stringify(d))
    .join('---\n');
}

/** A KubeProxyConfiguration with a short syncPeriod for `mode`. */
function configFile(sb: Sandbox, mode: ModeCase['mode']): string {
  const periods = { syncPeriod: `${SYNC_MS}ms`, minSyncPeriod: `${MIN_SYNC_MS}ms` };
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode,
    hostnameOverride: 'node1',
    clusterCIDR: sb.plan.clusterCIDR,
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    [mode]: periods,
  });
}

for (const c of CASES) {
  const unsupported = sandboxUnsupportedReason([...c.tools]) ?? (existsSync(CLI) ? undefined : `the daemon is not built (${CLI} is missing: run pnpm build)`);
  if (unsupported) console.log(`hostile-health e2e (${c.mode}) skipped: ${unsupported}`);

  describe.skipIf(unsupported !== undefined)(`kube-proxy whose ${c.mode} writes always fail (built binary, --manifests)`, () => {
    let sb: Sandbox;
    let dir: string;
    let callLog: string;
    let daemon: ChildProcess | undefined;
    let log = '';
    /** When the daemon said it starts the proxy (its first sync follows at once). */
    let proxyStartAt = 0;

    const get = async (path: string, port = 10256) => {
      const r = await sb.exec('node', ['curl', '-s', '-w', '\n%{http_code}', '--max-time', '2', `http://127.0.0.1:${port}${path}`], { timeoutMs: 5000 });
      const lines = r.stdout.split('\n');
      return { code: lines.at(-1)?.trim() ?? '', body: lines.slice(0, -1).join('\n') };
    };
    const tail = () => log.split('\n').slice(-15).join('\n');
    const waitFor = async (what: string, cond: () => Promise<boolean>, ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (await cond()) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}; daemon log tail:\n${tail()}`);
    };

    beforeAll(async () => {
      sb = await createSandbox({ tag: `hh${c.mode.slice(0, 3)}`, pods: 1, servers: false });
      dir = mkdtempSync(join(tmpdir(), 'kpts-hh-'));
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      callLog = join(dir, 'calls.log');
      writeFileSync(callLog, '');
      c.fakeTools(bin, callLog);
      const objects = join(dir, 'objects.yaml');
      writeFileSync(objects, manifests(sb));
      const config = join(dir, 'config.yaml');
      writeFileSync(config, configFile(sb, c.mode));
      daemon = spawn('ip', ['netns', 'exec', sb.netns('node'), process.execPath, CLI, `--config=${config}`, `--manifests=${objects}`, '--v=2'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
      });
      const onOutput = (b: Buffer) => {
        log += b.toString();
        if (proxyStartAt === 0 && log.includes('Sources synced; starting the proxy')) proxyStartAt = Date.now();
      };
      daemon.stdout?.on('data', onOutput);
      daemon.stderr?.on('data', onOutput);
      await waitFor('the proxy to start', async () => proxyStartAt > 0, 30_000);
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

    it('answers 503 on /healthz and /livez within 2 x syncPeriod, and counts the failed writes', async () => {
      expect((await get('/healthz')).code, 'healthy while the health timeout runs').toBe('200');
      await waitFor('/healthz 503', async () => (await get('/healthz')).code === '503', proxyStartAt + 2 * SYNC_MS + SLACK_MS - Date.now());
      const unhealthyAfterMs = Date.now() - proxyStartAt;
      console.log(`hostile-health e2e (${c.mode}): /healthz 503 ${unhealthyAfterMs} ms after the proxy started (2 x syncPeriod = ${2 * SYNC_MS} ms)`);
      // Not before the health timeout (the start line reaches us a little after it is written).
      expect(unhealthyAfterMs).toBeGreaterThanOrEqual(2 * SYNC_MS - 500);

      const healthz = await get('/healthz');
      expect(healthz.code).toBe('503');
      expect(JSON.parse(healthz.body)).toEqual({ lastUpdated: expect.stringMatching(/ \+0000 UTC$/), currentTime: expect.stringMatching(/ \+0000 UTC$/), nodeEligible: true });
      expect((await get('/livez')).code).toBe('503');

      // The daemon really ran our failing tool, retried, and never programmed the service.
      const calls = readFileSync(callLog, 'utf8').trim().split('\n').filter((l) => l !== '' && !/--version/.test(l));
      expect(calls.length, 'refused writes').toBeGreaterThanOrEqual(2);
      expect(await c.dump(sb)).not.toContain(CLUSTER_IP);
      expect(log).toMatch(/Failed to sync proxy rules/);

      const metrics = await get('/metrics', 10249);
      const failures = new RegExp(`^${c.failureMetric}(\\{[^}]*\\})? (\\d+)$`, 'm').exec(metrics.body);
      expect(failures, `${c.failureMetric} in /metrics`).not.toBeNull();
      // The first sync and at least one retry.
      expect(Number(failures?.[2])).toBeGreaterThanOrEqual(2);
      expect(metrics.body).toMatch(/^kubeproxy_proxy_healthz_total\{code="503"\} [1-9]/m);
      expect(metrics.body).toMatch(/^kubeproxy_proxy_livez_total\{code="503"\} [1-9]/m);
      expect(metrics.body).not.toMatch(/^kubeproxy_sync_proxy_rules_last_timestamp_seconds\{[^}]*\} [1-9]/m);
    });
  });
}
