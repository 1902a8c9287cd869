import { defineConfig } from 'vitest/config';

// Workspace packages export their TypeScript sources under this condition, so tests run
// against src/ without a build step.
const conditions = ['@kube-proxy-ts/source', 'node', 'import', 'default'];

export function packageConfig(options: { testTimeout?: number; include?: string[] } = {}) {
  return defineConfig({
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: ['@kube-proxy-ts/source'] } },
    test: {
      include: options.include ?? ['src/**/*.test.ts'],
      testTimeout: options.testTimeout ?? 10_000,
    },
  });
}
