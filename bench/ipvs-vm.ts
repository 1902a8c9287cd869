// Boots the IPVS test VM (e2e/vm/run-guest.sh) and runs ipvs.ts inside it. Run as root from
// bench/:   node --import tsx ipvs-vm.ts [--sizes 1000,5000,10000] [--step-limit 60]
// The VM is killed after --vm-timeout seconds (default 1500).

import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { bundleForGuest } from '../e2e/vm/bundle-guest.js';

const here = resolve(import.meta.dirname);
const stateDir = join(here, '../e2e/.vm');
const passThrough = process.argv.slice(2).filter((_, i, all) => !(all[i] === '--vm-timeout' || all[i - 1] === '--vm-timeout'));
const vmTimeoutIndex = process.argv.indexOf('--vm-timeout');
const vmTimeout = vmTimeoutIndex > 0 ? process.argv[vmTimeoutIndex + 1]! : '1500';

await bundleForGuest(join(here, 'ipvs.ts'), join(stateDir, 'ipvs-bench.mjs'));
const r = spawnSync(join(here, '../e2e/vm/run-guest.sh'), ['--timeout', vmTimeout, '--', 'node', 'ipvs-bench.mjs', ...passThrough], {
  cwd: stateDir,
  stdio: 'inherit',
  env: { ...process.env, KPTS_VM_MEM: process.env.KPTS_VM_MEM ?? '3072' },
});
process.exit(r.status ?? 1);
