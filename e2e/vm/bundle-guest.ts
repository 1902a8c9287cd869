// Bundles a TypeScript entry point (and the workspace sources it imports) into one ESM file
// for the test VM. Node then loads a single file over the VM's 9p root instead of hundreds
// of sources through a transpiler, which under software emulation takes minutes, and a
// source edited on the host mid-boot cannot be read half-written.

import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Esbuild {
  build(options: Record<string, unknown>): Promise<{ errors: unknown[] }>;
}

/** Writes `outfile` from `entry`; workspace packages resolve to their `src/`. */
export async function bundleForGuest(entry: string, outfile: string): Promise<void> {
  // esbuild comes with tsup, a dependency of the workspace root.
  const esbuild = createRequire(realpathSync(join(repoRoot, 'node_modules/tsup/package.json')))('esbuild') as Esbuild;
  await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@kube-proxy-ts/source'],
    // Test-runner modules are not needed in the guest; leave them to node if ever imported.
    external: ['vitest', 'fast-check', '@kubernetes/client-node'],
    banner: { js: "import { createRequire as __kptsCreateRequire } from 'node:module'; const require = __kptsCreateRequire(import.meta.url);" },
    logLevel: 'error',
  });
}
