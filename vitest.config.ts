import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the `lms-source` export condition.
const conditions = ['lms-source', ...defaultServerConditions];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'bench/**/*.test.ts', 'ops/**/*.test.ts', 'compose/**/*.test.ts'],
    globalSetup: ['packages/core/src/testing/global-setup.ts'],
    // Integration tests wait on real PostgreSQL and child processes.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
