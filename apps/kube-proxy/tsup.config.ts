import { packageBuild } from '../../tsup.shared.js';

// `@kube-proxy-ts/kube-proxy/sources`: the daemon's sources alone, for bench/daemon-sources.ts.
export default packageBuild({
  entry: { index: 'src/index.ts', cli: 'src/cli.ts', demo: 'src/demo.ts', 'sources/index': 'src/sources/index.ts' },
  dts: { entry: { index: 'src/index.ts', 'sources/index': 'src/sources/index.ts' } },
});
