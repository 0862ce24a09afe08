import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';

const require = createRequire(import.meta.url);

/**
 * The CLI's TypeScript entry point, run the way `pnpm exec lmsctl` runs it: after `--`, so Node
 * never takes lmsctl's own `--env-file` for its flag (nodejs/node#54232).
 */
export const cliEntry = fileURLToPath(new URL('../index.ts', import.meta.url));
export const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
export const tsxLoader = pathToFileURL(require.resolve('tsx')).href;

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  /** Extra node flags placed before the entry point (e.g. another --import). */
  nodeArgs?: string[];
  /** A command node runs under, e.g. `['setpriv', '--reuid=65534', …]` to run as another user. */
  prefix?: string[];
}

/**
 * Runs the real lmsctl in a child process with a clean environment (only PATH, HOME and what
 * the test passes), so a developer's DATABASE_URL never leaks into a test.
 */
/** Starts lmsctl without waiting (for tests that signal it mid-run); detached, so the test can kill its whole process group. */
export function spawnLmsctl(args: string[], options: RunOptions = {}) {
  return execa(
    process.execPath,
    ['--conditions=lms-source', '--import', tsxLoader, ...(options.nodeArgs ?? []), '--', cliEntry, ...args],
    {
      reject: false,
      extendEnv: false,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...options.env },
      cwd: options.cwd ?? repoRoot,
      stdin: 'ignore',
      detached: true,
    },
  );
}

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function runLmsctl(args: string[], options: RunOptions = {}): Promise<CliRun> {
  const [file, ...prefixArgs] = [...(options.prefix ?? []), process.execPath];
  const result = await execa(
    file,
    [
      ...prefixArgs,
      '--conditions=lms-source',
      '--import',
      tsxLoader,
      ...(options.nodeArgs ?? []),
      '--',
      cliEntry,
      ...args,
    ],
    {
      reject: false,
      extendEnv: false,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...options.env },
      cwd: options.cwd ?? repoRoot,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : undefined,
    },
  );
  return { exitCode: result.exitCode ?? 1, stdout: result.stdout, stderr: result.stderr };
}
