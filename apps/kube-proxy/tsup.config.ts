import { packageBuild } from '../../tsup.shared.js';

export default packageBuild({
  entry: ['src/index.ts', 'src/cli.ts', 'src/demo.ts'],
  dts: { entry: 'src/index.ts' },
  // The demo's sandbox helpers are resolved at run time, never bundled (they pull in vitest).
  external: ['@kube-proxy-ts/testing'],
});
