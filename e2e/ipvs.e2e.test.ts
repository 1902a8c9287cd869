// IPVS on a real IPVS kernel. This machine's kernel may lack IPVS, so the scenarios run in a
// small qemu VM booting Debian's kernel with this machine's root shared read-only
// (e2e/vm/run-guest.sh); inside it they use network namespaces like every other e2e suite.
// The host bundles the guest suite, boots the VM once, and turns its result lines into tests.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleForGuest } from './vm/bundle-guest.js';
import { IPVS_CONFORMANCE_RESULTS, IPVS_SCENARIOS, parseGuestResults } from './vm/ipvs-scenarios.js';

const here = resolve(import.meta.dirname);
const stateDir = join(here, '.vm');
/** Hard limit for the VM (qemu is killed by `timeout` after it); the suite takes 2.5-4 minutes. */
const VM_TIMEOUT_S = 420;

function unsupportedReason(): string | undefined {
  if (process.platform !== 'linux') return 'IPVS e2e needs Linux';
  if (process.getuid?.() !== 0) return 'IPVS e2e needs root (network namespaces in the VM)';
  const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  for (const cmd of ['qemu-system-x86_64', 'busybox', 'cpio', 'ipvsadm', 'ipset', 'socat', 'curl']) {
    if (!has(cmd)) return `${cmd} is not installed (apt-get install qemu-system-x86 busybox-static cpio ipvsadm ipset socat curl)`;
  }
  if (spawnSync(join(here, 'vm/kernel.sh'), ['find']).status !== 0) return 'no kernel with IPVS modules (bash e2e/vm/kernel.sh fetch unpacks Debian\'s into a cache)';
  return undefined;
}

const unsupported = unsupportedReason();
if (unsupported) console.log(`IPVS VM e2e skipped: ${unsupported}`);

describe.skipIf(unsupported !== undefined)('ipvs backend in a VM with IPVS', () => {
  let vm: ChildProcess | undefined;
  let output = '';
  let results = new Map<string, { ok: boolean; detail: string }>();

  beforeAll(async () => {
    await bundleForGuest(join(here, 'vm/ipvs-guest-suite.ts'), join(stateDir, 'ipvs-guest-suite.mjs'));
    vm = spawn(join(here, 'vm/run-guest.sh'), ['--timeout', String(VM_TIMEOUT_S), '--', 'node', 'ipvs-guest-suite.mjs'], {
      cwd: stateDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    vm.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    vm.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    await new Promise<void>((done) => vm!.once('close', () => done()));
    vm = undefined;
    results = parseGuestResults(output);
    const lines = output.split('\n').filter((l) => /^(KPTS-|first sync|second sync|conformance \d|run-guest)/.test(l));
    console.log(`IPVS VM console (summary):\n${lines.join('\n')}`);
  }, (VM_TIMEOUT_S + 60) * 1000);

  afterAll(() => {
    // Never leave a VM behind: kill the whole process group of run-guest.sh and qemu.
    if (vm?.pid !== undefined) {
      try {
        process.kill(-vm.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });

  it('the VM booted and the guest suite ran to its end', () => {
    expect(output, output.slice(-3000)).toMatch(/KPTS-SUMMARY passed=\d+ failed=\d+/);
    expect(results.get('setup'), results.get('setup')?.detail).toBeUndefined();
  });

  for (const name of [...Object.values(IPVS_SCENARIOS), ...IPVS_CONFORMANCE_RESULTS]) {
    it(name, () => {
      const r = results.get(name);
      expect(r, `no result for "${name}" in the guest output`).toBeDefined();
      expect(r!.ok, r!.detail.replaceAll(' | ', '\n')).toBe(true);
    });
  }
});
