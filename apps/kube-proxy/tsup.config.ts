import { packageBuild } from '../../tsup.shared.js';

export default packageBuild({
  entry: ['src/index.ts', 'src/cli.ts', 'src/demo.ts'],
  dts: { entry: 'src/index.ts' },
});
