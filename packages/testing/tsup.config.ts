import { packageBuild } from '../../tsup.shared.js';

// Separate entries: `@kube-proxy-ts/testing/conformance` (the checks without vitest) and
// `@kube-proxy-ts/testing/apiserver` (the in-process API server).
export default packageBuild({ entry: { index: 'src/index.ts', 'conformance/index': 'src/conformance/index.ts', 'apiserver/index': 'src/apiserver/index.ts' } });
