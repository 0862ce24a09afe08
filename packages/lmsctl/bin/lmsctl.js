#!/usr/bin/env node
// Installed entry point: runs the compiled CLI (`pnpm --filter @lms/lmsctl build` first).
// In the repository, `pnpm lmsctl …` runs the TypeScript sources directly.
import '../dist/index.js';
