import { execa } from 'execa';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, ExitCode } from '../../errors.js';

/** The environments `lmsctl up|down|…` know, and the Compose files that make each. */
export const STACK_ENVS = ['dev', 'staging', 'prod', 'observability'] as const;
export type StackEnv = (typeof STACK_ENVS)[number];

const FILES: Record<StackEnv, string[]> = {
  dev: ['docker-compose.yml'],
  prod: ['docker-compose.prod.yml'],
  // Staging is production's shape with staging values on top.
  staging: ['docker-compose.prod.yml', 'docker-compose.staging.yml'],
  // The monitoring services join the production stack.
  observability: ['docker-compose.prod.yml', 'docker-compose.observability.yml'],
};

const PROJECTS: Record<StackEnv, string> = {
  dev: 'lms-dev',
  prod: 'lms',
  staging: 'lms-staging',
  observability: 'lms',
};

/** The repository's compose/ folder (lmsctl runs from the sources or its built copy beside them). */
export const composeDir = fileURLToPath(new URL('../../../../../compose/', import.meta.url));

export function projectOf(env: StackEnv): string {
  return PROJECTS[env];
}

/** `-p project -f file… [--env-file file]`, the part every compose command shares. */
export function composeArgs(env: StackEnv, options: { envFile?: string; dir?: string } = {}): string[] {
  const dir = options.dir ?? composeDir;
  const args = ['-p', PROJECTS[env]];
  for (const file of FILES[env]) args.push('-f', path.join(dir, file));
  if (options.envFile) args.push('--env-file', options.envFile);
  return args;
}

/**
 * How to run Compose here: the `docker compose` plugin when it answers, else the standalone
 * `docker-compose` (v1); a clear error when neither exists.
 */
export async function composeCommand(env: NodeJS.ProcessEnv): Promise<string[]> {
  const plugin = await execa('docker', ['compose', 'version'], { env, reject: false });
  if (plugin.exitCode === 0) return ['docker', 'compose'];
  const standalone = await execa('docker-compose', ['version'], { env, reject: false });
  if (standalone.exitCode === 0) return ['docker-compose'];
  throw new CliError(
    ExitCode.failed,
    'neither `docker compose` nor `docker-compose` is installed',
    'install Docker (with the Compose plugin), or run the dev stack without it: lmsctl up --native',
  );
}

/**
 * Where a compose command's standard output goes: the terminal (`inherit`), lmsctl's stderr
 * (with --json, so stdout holds only lmsctl's result), back to the caller (`capture`), or line
 * by line to a function (`logs --json`).
 */
export type ComposeOutput = 'inherit' | 'stderr' | 'capture' | ((line: string) => void);

/** Runs a compose command (stderr always on the terminal); its exit code becomes lmsctl's error. */
export async function runCompose(
  command: string[],
  args: string[],
  options: { env: NodeJS.ProcessEnv; cwd: string; stdout?: ComposeOutput },
): Promise<string> {
  const output = options.stdout ?? 'inherit';
  const child = execa(command[0]!, [...command.slice(1), ...args], {
    env: options.env,
    cwd: options.cwd,
    reject: false,
    stdin: 'inherit',
    stdout: output === 'inherit' ? 'inherit' : output === 'stderr' ? 2 : 'pipe',
    stderr: 'inherit',
    buffer: output === 'capture',
  });
  if (typeof output === 'function') {
    for await (const line of child.iterable()) output(line);
  }
  const result = await child;
  if (result.exitCode !== 0) {
    throw new CliError(
      ExitCode.failed,
      `${command.join(' ')} ${args.slice(-1)[0] ?? ''} failed (exit code ${result.exitCode ?? result.signal})`,
    );
  }
  return typeof result.stdout === 'string' ? result.stdout : '';
}
