// `kube-proxy inspect` and `kube-proxy explain` against the built daemon on a real kernel, in
// iptables and nftables mode: run without flags inside the node namespace (the daemon runs with
// the default metrics address), they describe the inspect world (e2e/inspect-world.ts), and the
// endpoints explain names are exactly the ones real connections reach.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSandbox, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';
import { INSPECT_IPS, INSPECT_NODE_PORTS, inspectManifests } from './inspect-world.js';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));

interface Explained {
  servicePort?: string;
  paths: { endpoint?: string; probability?: number; verdict: string; reason?: string; masquerade: boolean }[];
}

for (const mode of ['iptables', 'nftables'] as const) {
  const unsupported = sandboxUnsupportedReason([mode === 'iptables' ? 'iptables-restore' : 'nft']) ?? (existsSync(CLI) ? undefined : `the daemon is not built (${CLI} is missing: run pnpm build)`);
  if (unsupported) console.log(`inspect e2e (${mode}) skipped: ${unsupported}`);

  describe.skipIf(unsupported !== undefined)(`kube-proxy inspect and explain (${mode} mode, built binary)`, () => {
    let sb: Sandbox;
    let dir: string;
    let daemon: ChildProcess | undefined;
    let log = '';
    const podIP = (name: string) => sb.pods.find((p) => p.name === name)!.ip;
    const podOf = (hostPort: string) => sb.pods.find((p) => hostPort === `${p.ip}:8080`)?.name ?? hostPort;

    const cli = async (...args: string[]) => {
      const r = await sb.exec('node', [process.execPath, CLI, ...args], { timeoutMs: 30_000 });
      if (r.code !== 0) throw new Error(`kube-proxy ${args.join(' ')} exited ${r.code}: ${r.stderr}\ndaemon log tail:\n${log.split('\n').slice(-10).join('\n')}`);
      return r.stdout;
    };
    const explain = async (from: string, to: string) => JSON.parse(await cli('explain', '--from', from, '--to', to, '-o', 'json')) as Explained;
    /** The pods `tries` connections from `from` reach. */
    const reached = async (from: string, host: string, port: number, tries: number) => {
      const seen = new Set<string>();
      for (let i = 0; i < tries; i++) {
        const r = await sb.tryHttp(from, host, port, { timeoutMs: 1500 });
        seen.add(r.ok ? r.body.trim() : 'fail');
      }
      return [...seen].sort();
    };

    beforeAll(async () => {
      sb = await createSandbox({ tag: `ins${mode.slice(0, 3)}`, pods: 3 });
      dir = mkdtempSync(join(tmpdir(), 'kpts-ins-'));
      const file = join(dir, 'objects.yaml');
      writeFileSync(file, inspectManifests(sb));
      daemon = spawn(
        'ip',
        ['netns', 'exec', sb.netns('node'), process.execPath, CLI, `--manifests=${file}`, `--proxy-mode=${mode}`, '--hostname-override=node1', `--cluster-cidr=${sb.plan.clusterCIDR}`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      daemon.stdout?.on('data', (b: Buffer) => (log += b.toString()));
      daemon.stderr?.on('data', (b: Buffer) => (log += b.toString()));
      const end = Date.now() + 30_000;
      while (!(await sb.tryHttp('client', INSPECT_IPS.web, 80, { timeoutMs: 1000 })).ok) {
        if (Date.now() > end) throw new Error(`no first sync within 30 s; daemon log:\n${log}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }, 60_000);

    afterAll(async () => {
      if (daemon && daemon.exitCode === null) {
        daemon.kill('SIGTERM');
        await Promise.race([new Promise((r) => daemon?.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
        if (daemon.exitCode === null) daemon.kill('SIGKILL');
      }
      await sb?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('inspect (no flags) lists every service port as in sync with the kernel; -o json gives the details', async () => {
      const table = await cli('inspect');
      for (const name of ['web', 'np', 'empty', 'local', 'sticky', 'lb']) expect(table).toMatch(new RegExp(`e2e/${name}:http/TCP .* in sync\\n`));
      const report = JSON.parse(await cli('inspect', '-o', 'json')) as {
        mode: string;
        servicePorts: { servicePort: string; kernel?: { endpoints: string[]; blocked: string[] }; drift?: unknown; endpoints: { endpoint: string; usedFor: string[]; reason?: string }[] }[];
      };
      expect(report.mode).toBe(mode);
      const sp = (name: string) => report.servicePorts.find((s) => s.servicePort === `e2e/${name}:http`)!;
      expect(sp('web').kernel?.endpoints).toEqual([`${podIP('pod1')}:8080`, `${podIP('pod2')}:8080`]);
      expect(sp('web').endpoints.find((e) => e.endpoint === `${podIP('pod3')}:8080`)).toMatchObject({ usedFor: [], reason: 'not ready' });
      expect(sp('empty').kernel?.blocked).toHaveLength(1);
      expect(sp('local').endpoints.find((e) => e.endpoint === `${INSPECT_IPS.remotePod}:8080`)).toMatchObject({ usedFor: ['cluster'], reason: 'on another node (node2): externalTrafficPolicy Local' });
      expect(report.servicePorts.filter((s) => s.drift !== undefined)).toEqual([]);
      expect(await cli('inspect', 'e2e/local')).toMatch(/externalTrafficPolicy=Local/);
    });

    it('explain names the endpoints a ClusterIP connection reaches, half each', async () => {
      const e = await explain(sb.client.ip, `${INSPECT_IPS.web}:80/TCP`);
      expect(e.servicePort).toBe('e2e/web:http');
      expect(e.paths.map((p) => [podOf(p.endpoint!), p.probability])).toEqual([['pod1', 0.5], ['pod2', 0.5]]);
      expect(await reached('client', INSPECT_IPS.web, 80, 24)).toEqual(e.paths.map((p) => podOf(p.endpoint!)).sort());
    });

    it('explain follows a NodePort from outside the cluster to its one endpoint, masqueraded', async () => {
      const e = await explain(sb.external.ip, `${sb.node.ip}:${INSPECT_NODE_PORTS.nodePort}/TCP`);
      expect(e.paths.map((p) => [podOf(p.endpoint!), p.probability, p.masquerade])).toEqual([['pod3', 1, true]]);
      expect(await reached('external', sb.node.ip, INSPECT_NODE_PORTS.nodePort, 4)).toEqual(['pod3']);
    });

    it('explain says a Service without endpoints is rejected, and the connection is refused', async () => {
      const e = await explain(sb.client.ip, `${INSPECT_IPS.empty}:80/TCP`);
      expect(e.paths).toEqual([expect.objectContaining({ verdict: 'reject', reason: expect.stringMatching(/no endpoints/) })]);
      expect(await reached('client', INSPECT_IPS.empty, 80, 2)).toEqual(['fail']);
    });

    it('explain keeps external traffic of an externalTrafficPolicy Local NodePort on this node', async () => {
      const e = await explain(sb.external.ip, `${sb.node.ip}:${INSPECT_NODE_PORTS.local}/TCP`);
      expect(e.paths.map((p) => [podOf(p.endpoint!), p.probability, p.masquerade])).toEqual([['pod1', 1, false]]);
      expect(await reached('external', sb.node.ip, INSPECT_NODE_PORTS.local, 6)).toEqual(['pod1']);
      // From a pod, the remote endpoint is possible too (and unreachable in this sandbox).
      const fromPod = await explain(sb.client.ip, `${INSPECT_IPS.local}:80/TCP`);
      expect(fromPod.paths.map((p) => p.endpoint).sort()).toEqual([`${INSPECT_IPS.remotePod}:8080`, `${podIP('pod1')}:8080`].sort());
    });
  });
}
