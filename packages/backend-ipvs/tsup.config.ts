import { packageBuild } from '../../tsup.shared.js';

// test-support/index.ts is a separate entry (`@kube-proxy-ts/backend-ipvs/test-support`) so the backend's entry carries none of it.
export default packageBuild({ entry: { index: 'src/index.ts', 'test-support/index': 'src/test-support/index.ts' } });
