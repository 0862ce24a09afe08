import os from 'node:os';
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
    // Vitest's default leaves one core free. These files spend most of their time waiting on
    // PostgreSQL, Redis and child processes, and every test uses names of its own, so one file
    // per core keeps the machine busy: on 2 cores, 13 minutes became 8.
    maxWorkers: os.availableParallelism(),
  },
});
