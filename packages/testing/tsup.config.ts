import { packageBuild } from '../../tsup.shared.js';

// conformance/index.ts is a separate entry (`@kube-proxy-ts/testing/conformance`): the checks without vitest.
export default packageBuild({ entry: { index: 'src/index.ts', 'conformance/index': 'src/conformance/index.ts' } });
