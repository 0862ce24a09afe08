import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { CliError, ExitCode } from '../../errors.js';
import type { Output } from '../../output.js';
import { prettifyLines } from './log-prettifier.js';

/** The repository root: the dev stack runs the API and the worker from their sources. */
const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));

export interface AppProcess {
  name: 'api' | 'worker';
  child: ResultPromise;
}

/**
 * Starts `entry` (relative to the repository root) from its TypeScript sources with `env` only,
 * its log lines made readable on stderr behind `[name]`.
 */
export function startFromSource(
  name: AppProcess['name'],
  entry: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  out: Output,
): AppProcess {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = execa(
    process.execPath,
    ['--conditions=lms-source', '--import', tsx, path.join(repoRoot, entry), ...args],
    {
      env,
      extendEnv: false,
      cwd: repoRoot,
      reject: false,
      buffer: false,
      stdin: 'ignore',
      // Their own process group: Ctrl-C reaches lmsctl alone, which then stops them with one
      // SIGTERM each (the terminal's SIGINT on top would count as a second signal and make the
      // worker abandon its running jobs).
      detached: true,
    },
  );
  const prefix = out.errStyle[name === 'api' ? 'cyan' : 'magenta'](`[${name}]`.padEnd(8));
  prettifyLines([child.stdout, child.stderr], prefix, (text) => out.streams.stderr.write(text));
  return { name, child };
}

/** Fails when one of `processes` has exited. */
function assertAlive(processes: AppProcess[]): void {
  const dead = processes.find(({ child }) => child.exitCode !== null);
  if (dead)
    throw new CliError(
      ExitCode.failed,
      `${dead.name} exited while starting (exit code ${dead.child.exitCode}); its log is above`,
    );
}

/**
 * Resolves once `url` answers 2xx while all of `processes` still run (an answer after one died
 * came from someone else); fails when `signal` aborts, when one of `processes` exits first, or
 * after a minute.
 */
export async function untilAnswers(url: string, signal: AbortSignal, processes: AppProcess[]): Promise<void> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (signal.aborted) throw new CliError(ExitCode.failed, 'stopped while starting');
    assertAlive(processes);
    let answered = false;
    try {
      answered = (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      // Not up yet.
    }
    if (answered) {
      assertAlive(processes);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new CliError(ExitCode.failed, `${url} did not answer within a minute`);
}
