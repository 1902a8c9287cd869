import { defineConfig, type Options } from 'tsup';

// Every workspace package builds the same way: ESM + d.ts for Node 20 and later.
export function packageBuild(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    ...overrides,
  });
}
