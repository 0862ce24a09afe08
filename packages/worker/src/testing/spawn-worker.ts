import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

/** The worker's TypeScript entry point, run the way `pnpm --filter @lms/worker start` runs it. */
export const workerEntry = fileURLToPath(new URL('../main.ts', import.meta.url));
const packageDir = fileURLToPath(new URL('../../', import.meta.url));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;

export interface SpawnedWorker {
  child: ChildProcess;
  pid: number;
  /** Everything written so far (stdout: JSON log lines; stderr: usage and config errors). */
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once a log line matches. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/**
 * Starts the real worker in a child process with only the environment given (plus PATH and
 * HOME), so a developer's DATABASE_URL never leaks into a test.
 */
export function spawnWorker(args: string[], env: Record<string, string>): SpawnedWorker {
  const child = spawn(process.execPath, ['--conditions=lms-source', '--import', tsxLoader, workerEntry, ...args], {
    cwd: packageDir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitForLog(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = out.split('\n').find((candidate) => pattern.test(candidate));
        if (line) return line;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`the worker exited before logging ${String(pattern)}:\n${out}\n${err}`);
        }
        if (Date.now() > deadline) throw new Error(`no log line matching ${String(pattern)} in:\n${out}\n${err}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}
