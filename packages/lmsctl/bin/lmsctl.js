#!/usr/bin/env -S node --
// The `lmsctl` command. The `--` above ends Node's own options: Node 20 reads `--env-file` even
// after the script's name (nodejs/node#54232), exits 9 on a missing file and applies a
// NODE_OPTIONS line in it before lmsctl can read its own `--env-file`. The package managers'
// shims copy the `--` from this line; every other command line that starts this file must put it
// before the file's path too (`node -- bin/lmsctl.js …`).
//
// In the repository (src/ beside this folder; the package ships only bin/ and dist/) it runs the
// TypeScript sources through tsx, so `pnpm exec lmsctl` needs no build and never runs a stale
// one; everywhere else it runs the compiled dist/.
import { existsSync } from 'node:fs';
import { register } from 'node:module';

const sources = new URL('../src/index.ts', import.meta.url);

/** Registers tsx's loader; false when the repository's dev dependencies are not installed. */
async function loadTsx() {
  try {
    await import('tsx');
    return true;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ERR_MODULE_NOT_FOUND') return false;
    throw error;
  }
}

if (!existsSync(sources)) {
  await import('../dist/index.js');
} else if (await loadTsx()) {
  // What `node --conditions=lms-source` does: the workspace packages resolve to their sources.
  register('./lms-source-condition.js', import.meta.url);
  await import(sources.href);
} else {
  process.stderr.write('error: lmsctl cannot run its sources: tsx is missing (run pnpm install in the repository)\n');
  process.exitCode = 1;
}
