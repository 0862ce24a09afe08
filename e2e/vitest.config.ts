import { fileURLToPath } from 'node:url';
import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// The stack tests: the real Dockerfile and Compose files on the Docker engine, driven through
// lmsctl (`pnpm test:stacks`, part of `pnpm test`). Slow by nature, so apart from the unit and
// integration tests, and one file at a time: each brings up a whole stack on a 2-core machine.
const conditions = ['lms-source', ...defaultServerConditions];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['e2e/**/*.e2e.ts'],
    globalSetup: ['e2e/global-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 900_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
