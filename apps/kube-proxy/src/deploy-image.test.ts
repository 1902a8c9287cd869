// deploy/ for replacing upstream: the image-only kustomization changes nothing but the image, and
// the image's /usr/local/bin/kube-proxy (deploy/kube-proxy.sh) selects the node's iptables flavour
// as upstream's iptables-wrapper does. The script runs against fake tools on PATH, so nothing on
// this machine is selected or started.

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kpts-deploy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('image-only kustomization', () => {
  it("patches only the kube-proxy container's image of kube-system/kube-proxy, with an images: override", () => {
    const k = parse(readFileSync(deployFile('image-only/kustomization.yaml'), 'utf8')) as { resources: string[]; images: Array<{ name: string; newName: string }> };
    const docs = k.resources.flatMap((r) => parseAllDocuments(readFileSync(deployFile(`image-only/${r}`), 'utf8')).map((d) => d.toJS() as Record<string, unknown>));
    // No ConfigMap, no RBAC: kubeadm's stay.
    expect(docs.map((d) => `${d.kind as string}/${(d.metadata as { name: string }).name}`)).toEqual(['DaemonSet/kube-proxy']);
    expect(docs[0]).toEqual({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'kube-proxy', namespace: 'kube-system' },
      spec: { template: { spec: { containers: [{ name: 'kube-proxy', image: 'registry.k8s.io/kube-proxy' }] } } },
    });
    expect(k.images).toEqual([expect.objectContaining({ name: 'registry.k8s.io/kube-proxy', newName: 'ghcr.io/kube-proxy-ts/kube-proxy' })]);
  });
});

describe('kube-proxy.sh (the image entrypoint)', () => {
  /** Runs the script with fake *-save tools printing `saves[tool]`; returns alternatives set and the exec'd argv. */
  function run(saves: Record<string, string>, args: string[] = ['--config=/var/lib/kube-proxy/config.conf']) {
    const bin = mkdtempSync(join(dir, 'bin-'));
    const log = join(bin, 'calls.log');
    const tool = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    for (const t of ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save']) {
      tool(t, `cat <<'OUT'\n${saves[t] ?? ''}\nOUT`);
    }
    tool('update-alternatives', `echo "update-alternatives $*" >> '${log}'`);
    tool('node', `echo "GLIBC_TUNABLES=$GLIBC_TUNABLES node $*" >> '${log}'`);
    // The built daemon, with the interpreter line of the real one (src/cli.ts): run by the fake node above.
    const cli = join(bin, 'cli.js');
    writeFileSync(cli, `${readFileSync(fileURLToPath(new URL('./cli.ts', import.meta.url)), 'utf8').split('\n')[0]}\n`);
    chmodSync(cli, 0o755);
    const r = spawnSync('sh', [deployFile('kube-proxy.sh'), ...args], { env: { PATH: `${bin}:/usr/bin:/bin`, KUBE_PROXY_CLI: cli }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return readFileSync(log, 'utf8').trim().split('\n');
  }
  const nftSet = ['update-alternatives --set iptables /usr/sbin/iptables-nft', 'update-alternatives --set ip6tables /usr/sbin/ip6tables-nft'];
  const legacySet = ['update-alternatives --set iptables /usr/sbin/iptables-legacy', 'update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy'];
  const rules = (n: number) => Array.from({ length: n }, (_, i) => `-A INPUT -s 10.0.0.${i} -j ACCEPT`).join('\n');

  it("follows the kubelet's hint chain: nft first, then legacy", () => {
    const hint = '*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT';
    expect(run({ 'iptables-nft-save': hint, 'iptables-legacy-save': rules(50) }).slice(0, 2)).toEqual(nftSet);
    expect(run({ 'ip6tables-legacy-save': '*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT', 'iptables-nft-save': rules(5) }).slice(0, 2)).toEqual(legacySet);
  });

  it('without a hint, the flavour with more rules wins, nft on a tie', () => {
    expect(run({ 'iptables-legacy-save': rules(12), 'iptables-nft-save': rules(3) }).slice(0, 2)).toEqual(legacySet);
    expect(run({ 'iptables-legacy-save': rules(2), 'ip6tables-nft-save': rules(3) }).slice(0, 2)).toEqual(nftSet);
    expect(run({}).slice(0, 2)).toEqual(nftSet);
  });

  it("then runs the proxy with the arguments as given, through its interpreter line's V8 options", () => {
    const [exec] = run({}, ['--config=/var/lib/kube-proxy/config.conf', '--hostname-override=node 1']).slice(2);
    expect(exec).toMatch(
      /^GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=131072 node --max-semi-space-size=1 --expose-gc \S+\/cli\.js --config=\/var\/lib\/kube-proxy\/config\.conf --hostname-override=node 1$/,
    );
    expect(readFileSync(deployFile('kube-proxy.sh'), 'utf8')).toContain('${KUBE_PROXY_CLI:-/opt/kube-proxy/dist/cli.js}');
  });
});
