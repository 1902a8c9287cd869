// Records what the kernel holds for the inspect world (e2e/inspect-world.ts) in iptables and
// nftables mode, as test data for the backends' kernel-view and explain tests. As root, from bench/
// (which has tsx): node --conditions=@kube-proxy-ts/source --import tsx ../e2e/capture-inspect-samples.ts
// The daemon runs from source inside a sandbox's node namespace; everything is deleted afterwards.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSandbox } from '@kube-proxy-ts/testing';
import { INSPECT_IPS, inspectManifests } from './inspect-world.js';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/src/cli.ts', import.meta.url));
const OUT = {
  iptables: fileURLToPath(new URL('../packages/backend-iptables/src/testdata/inspect-world.iptables-save.txt', import.meta.url)),
  nftables: fileURLToPath(new URL('../packages/backend-nftables/src/testdata/inspect-world.nft.json', import.meta.url)),
};

async function capture(mode: 'iptables' | 'nftables'): Promise<void> {
  const sb = await createSandbox({ tag: `cap${mode.slice(0, 3)}`, pods: 3 });
  const dir = mkdtempSync(join(tmpdir(), 'kpts-cap-'));
  const file = join(dir, 'objects.yaml');
  writeFileSync(file, inspectManifests(sb));
  let log = '';
  const daemon = spawn(
    'ip',
    ['netns', 'exec', sb.netns('node'), process.execPath, '--conditions=@kube-proxy-ts/source', '--import', 'tsx', CLI,
      `--manifests=${file}`, `--proxy-mode=${mode}`, '--hostname-override=node1', `--cluster-cidr=${sb.plan.clusterCIDR}`,
      '--healthz-bind-address=127.0.0.1:10256', '--metrics-bind-address=127.0.0.1:10249'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  daemon.stdout.on('data', (b: Buffer) => (log += b.toString()));
  daemon.stderr.on('data', (b: Buffer) => (log += b.toString()));
  try {
    const end = Date.now() + 60_000;
    while (!(await sb.tryHttp('client', INSPECT_IPS.web, 80, { timeoutMs: 1000 })).ok) {
      if (Date.now() > end) throw new Error(`${mode}: no first sync; log:\n${log}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    if (mode === 'iptables') writeFileSync(OUT.iptables, await sb.execOk('node', ['iptables-save'], { timeoutMs: 10_000 }));
    else writeFileSync(OUT.nftables, `${JSON.stringify(JSON.parse(await sb.execOk('node', ['nft', '-j', 'list', 'table', 'ip', 'kube-proxy'])), null, 1)}\n`);
    console.log(`${mode}: recorded`);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    await sb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const mode of ['iptables', 'nftables'] as const) await capture(mode);
