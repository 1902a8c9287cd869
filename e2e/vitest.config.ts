import { defineConfig, mergeConfig } from 'vitest/config';
import { packageConfig } from '../vitest.shared.js';

// Suites change kernel state inside their own network namespaces; run files one at a time
// so namespaces and timing do not interfere on a 2-core machine.
export default mergeConfig(
  packageConfig({ include: ['**/*.e2e.test.ts'], testTimeout: 120_000 }),
  defineConfig({ test: { fileParallelism: false, hookTimeout: 120_000 } }),
);
