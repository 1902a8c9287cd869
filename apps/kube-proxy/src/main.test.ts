import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeKubeProxyConfiguration } from './config/v1alpha1.js';
import { watchConfigFile } from './config/watch.js';
import { main } from './main.js';

const dir = mkdtempSync(join(tmpdir(), 'kpts-main-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

describe('main', () => {
  it('--version and --help answer and exit 0', async () => {
    expect(await run(['--version'])).toMatchObject({ code: 0, out: expect.stringMatching(/^Kubernetes v1\.\d+\.\d+ \(kube-proxy-ts \d/) });
    expect(JSON.parse((await run(['--version=raw'])).out)).toMatchObject({ gitVersion: expect.stringMatching(/^v1\./) });
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--proxy-mode');
  });

  it('an unknown flag or a bad config file is a clear error and exit 1', async () => {
    expect(await run(['--proxy-mod=ipvs'])).toEqual({ code: 1, out: '', err: 'Error: unknown flag: --proxy-mod (see kube-proxy --help)\nRun "kube-proxy --help" for the list of flags.\n' });
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  masqueradeBit: 99\n');
    const r = await run([`--config=${bad}`]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('iptables.masqueradeBit: Invalid value: 99: must be within the range [0, 31]');
  });

  it('--write-config-to writes the defaulted configuration (flags applied) and exits', async () => {
    const target = join(dir, 'out.yaml');
    const r = await run([`--write-config-to=${target}`, '--proxy-mode=nftables', '--cluster-cidr=10.244.0.0/16']);
    expect(r).toMatchObject({ code: 0, out: `Wrote configuration to: ${target}\n` });
    const { config, warnings } = decodeKubeProxyConfiguration(readFileSync(target, 'utf8'));
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ mode: 'nftables', clusterCIDR: '10.244.0.0/16', syncPeriod: 30_000, minSyncPeriod: 1_000 });
  });
});

describe('config file watch', () => {
  it('reports a change of content (not a mere touch) once', async () => {
    const file = join(dir, 'watched.yaml');
    writeFileSync(file, 'a: 1\n');
    const seen: string[] = [];
    const w = watchConfigFile(file, (why) => seen.push(why), 50);
    try {
      writeFileSync(file, 'a: 1\n');
      await new Promise((r) => setTimeout(r, 200));
      expect(seen).toEqual([]);
      writeFileSync(file, 'a: 2\n');
      const end = Date.now() + 3000;
      while (seen.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toEqual([`content of the configuration file ${file} was updated`]);
    } finally {
      w.close();
    }
  });
});
