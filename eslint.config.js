import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The floors between packages, as import restrictions. `no-restricted-imports` options do not
// merge across config objects, so each folder's entry lists every floor that applies to it.

/** Packages are used through their `exports`, never through another package's `src/`. */
const CROSS_PACKAGE_SRC = [
  { regex: '^(\\.\\./)+(packages/|apps/)?[\\w.-]+/src(/|$)', message: "Import the package by name (its exports map), not another package's src/." },
  { regex: '^@kube-proxy-ts/[\\w.-]+/src(/|$)', message: 'Import the package through its exports map, not its src/.' },
];

/** Code that ships does not depend on the test kit. */
const TEST_KIT = [
  { regex: '^@kube-proxy-ts/testing(/|$)', message: '@kube-proxy-ts/testing is for tests (*.test.ts, *.test-support.ts, test-support/) only.' },
];

/** core decides, it does not act: no processes, files, sockets or host facts, and no workspace package below it. */
const CORE_IO = [
  {
    regex: '^(node:)?(fs|child_process|net|dgram|http|https|http2|os|dns|tls|readline|worker_threads|cluster|inspector)(/.*)?$',
    message: 'core has no I/O: pass what it needs in (see BackendContext, Clock), and do the I/O in netfilter, a backend or the app.',
  },
  { regex: '^@kube-proxy-ts/', message: 'core is the bottom of the graph: it imports no other workspace package.' },
];

const restrict = (...groups) => ['error', { patterns: groups.flat() }];

/**
 * Shipped code uses client-node's types only: loading the library (its generated API and models)
 * costs the daemon about 75 MiB. kubeconfig.ts imports it on demand, for exec plugins and auth
 * providers alone.
 */
const CLIENT_NODE_TYPES_ONLY = [
  'error',
  {
    paths: [{ name: '@kubernetes/client-node', allowTypeImports: true, message: 'Import types only (import type); sources/rest-client.ts and sources/kubeconfig.ts talk to the API server.' }],
    patterns: [{ group: ['@kubernetes/client-node/*'], allowTypeImports: true, message: "A module of client-node loads its generated models (about 70 MiB): convert objects in sources/typed.ts." }],
  },
];

const TESTS = ['**/*.test.ts', '**/*.test-support.ts', '**/test-support/**'];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/.turbo/**', 'e2e/.vm/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': restrict(CROSS_PACKAGE_SRC),
    },
  },
  {
    files: ['packages/*/src/**/*.ts', 'apps/*/src/**/*.ts'],
    ignores: [...TESTS, 'packages/testing/**'],
    rules: { 'no-restricted-imports': restrict(CROSS_PACKAGE_SRC, TEST_KIT), '@typescript-eslint/no-restricted-imports': CLIENT_NODE_TYPES_ONLY },
  },
  {
    files: ['packages/core/src/**/*.ts'],
    ignores: TESTS,
    rules: { 'no-restricted-imports': restrict(CROSS_PACKAGE_SRC, TEST_KIT, CORE_IO), '@typescript-eslint/no-restricted-imports': CLIENT_NODE_TYPES_ONLY },
  },
);
