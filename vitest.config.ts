import { defineConfig } from 'vitest/config';

// Every package runs its own unit tests; this file lets one `vitest` see them all.
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*'],
  },
});
