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

/** Project names when neither --project-name nor COMPOSE_PROJECT_NAME gives one. */
const DEFAULT_PROJECTS: Record<StackEnv, string> = {
  dev: 'lms-dev',
  prod: 'lms',
  staging: 'lms-staging',
  observability: 'lms',
};

/** The repository's compose/ folder (lmsctl runs from the sources or its built copy beside them). */
export const composeDir = fileURLToPath(new URL('../../../../../compose/', import.meta.url));

/** One stack: its environment, Compose project and files. Every stack command addresses one. */
export interface StackTarget {
  env: StackEnv;
  project: string;
  files: string[];
  envFile?: string;
}

export interface StackSelection {
  env?: StackEnv;
  /** --project-name; else COMPOSE_PROJECT_NAME; else the environment's default. */
  projectName?: string;
  envFile?: string;
  /** Compose folder (tests point it elsewhere). */
  dir?: string;
  /** More Compose files applied on top, in order (site overrides). */
  overrides?: string[];
}

// Compose's own rule for project names (v2 enforces it; v1 silently mangles other names).
const PROJECT_NAME = /^[a-z0-9][a-z0-9_-]*$/;

export function resolveStack(selection: StackSelection, env: NodeJS.ProcessEnv, cwd: string): StackTarget {
  const stackEnv = selection.env ?? 'dev';
  const project = selection.projectName ?? (env.COMPOSE_PROJECT_NAME || DEFAULT_PROJECTS[stackEnv]);
  if (!PROJECT_NAME.test(project)) {
    throw new CliError(
      ExitCode.usage,
      `invalid project name ${JSON.stringify(project)}${selection.projectName ? '' : ' (from COMPOSE_PROJECT_NAME)'}: use lowercase letters, digits, "-" and "_", starting with a letter or digit`,
    );
  }
  const dir = selection.dir ?? composeDir;
  return {
    env: stackEnv,
    project,
    files: [
      ...FILES[stackEnv].map((file) => path.join(dir, file)),
      ...(selection.overrides ?? []).map((file) => path.resolve(cwd, file)),
    ],
    ...(selection.envFile ? { envFile: selection.envFile } : {}),
  };
}

/** `-p project -f file… [--env-file file]`, the part every compose command shares. */
export function composeArgs(target: StackTarget): string[] {
  const args = ['-p', target.project];
  for (const file of target.files) args.push('-f', file);
  if (target.envFile) args.push('--env-file', target.envFile);
  return args;
}

/** How to run Compose here, and the environment it runs with. */
export interface Compose {
  command: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * The `docker compose` plugin when it answers, else the standalone `docker-compose` (v1); a clear
 * error when neither exists. The environment names the dev image after the project, so two
 * checkouts (or a test stack) never run each other's dependencies, and asks for BuildKit should
 * Compose build anything itself (v1 uses the legacy builder otherwise, which fails on RUN --mount).
 */
export async function composeCommand(env: NodeJS.ProcessEnv, target: StackTarget): Promise<Compose> {
  const composeEnv: NodeJS.ProcessEnv = {
    ...env,
    DOCKER_BUILDKIT: '1',
    COMPOSE_DOCKER_CLI_BUILD: '1',
    LMS_DEV_IMAGE: env.LMS_DEV_IMAGE || `${target.project}-dev:latest`,
  };
  const plugin = await execa('docker', ['compose', 'version'], { env, reject: false });
  if (plugin.exitCode === 0) return { command: ['docker', 'compose'], env: composeEnv };
  const standalone = await execa('docker-compose', ['version'], { env, reject: false });
  if (standalone.exitCode === 0) return { command: ['docker-compose'], env: composeEnv };
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

/**
 * Runs `compose <common args> <args>` (stderr on the terminal, or captured with `stderr:
 * 'capture'`); a non-zero exit becomes an error naming the subcommand (`docker-compose up failed`).
 */
export async function runCompose(
  compose: Compose,
  target: StackTarget,
  args: string[],
  options: { cwd: string; stdout?: ComposeOutput; stderr?: 'inherit' | 'capture'; input?: string },
): Promise<string> {
  const output = options.stdout ?? 'inherit';
  const child = execa(compose.command[0]!, [...compose.command.slice(1), ...composeArgs(target), ...args], {
    env: compose.env,
    cwd: options.cwd,
    reject: false,
    ...(options.input === undefined ? { stdin: 'inherit' as const } : { input: options.input }),
    stdout: output === 'inherit' ? 'inherit' : output === 'stderr' ? 2 : 'pipe',
    stderr: options.stderr === 'capture' ? 'pipe' : 'inherit',
    buffer: output === 'capture' || options.stderr === 'capture',
  });
  if (typeof output === 'function') {
    for await (const line of child.iterable()) output(line);
  }
  const result = await child;
  if (result.exitCode !== 0) {
    const reason = typeof result.stderr === 'string' ? lastLine(result.stderr) : '';
    throw new ComposeFailed(
      `${compose.command.join(' ')} ${args[0] ?? ''} failed (exit code ${result.exitCode ?? result.signal})${reason ? `: ${reason}` : ''}`,
      typeof result.stderr === 'string' ? result.stderr : '',
    );
  }
  return typeof result.stdout === 'string' ? result.stdout : '';
}

/** A compose command that exited non-zero; `output` is its stderr when it was captured. */
export class ComposeFailed extends CliError {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(ExitCode.failed, message);
  }
}

/** The last non-empty line of a command's output: what it said last, usually why it failed. */
export function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .at(-1) ?? ''
  );
}
