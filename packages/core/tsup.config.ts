import { packageBuild } from '../../tsup.shared.js';

// fixtures.ts is a separate entry (`@kube-proxy-ts/core/fixtures`) for tests and benches.
export default packageBuild({ entry: ['src/index.ts', 'src/fixtures.ts'] });
