import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/cli.ts', 'src/demo.ts'],
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  clean: true,
  sourcemap: true,
  target: 'node20',
  // The demo's sandbox helpers are resolved at run time, never bundled (they pull in vitest).
  external: ['@kube-proxy-ts/testing'],
});
