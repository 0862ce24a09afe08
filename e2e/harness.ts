import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
// Relative, not @lms/core/testing: the global setup loads this without the lms-source condition.
import { freePort } from '../packages/core/src/testing/free-port.js';
import { repoRoot, runLmsctl, type CliRun } from '../packages/lmsctl/src/testing/run-cli.js';

export { freePort, repoRoot };

/** Every Compose project of these tests starts with this, followed by the creating process id. */
export const PROJECT_PREFIX = 'lmse2e';

/** A project name of this test's own: unique, and traceable to the process that made it. */
export function projectName(kind: string): string {
  return `${PROJECT_PREFIX}-${process.pid}-${kind}-${randomBytes(3).toString('hex')}`;
}

/**
 * What the stacks need from the machine: the registry's images, or the stand-ins' variables
 * (NODE_IMAGE, POSTGRES_IMAGE, …) that `.ci/run` exports where no registry answers; and the
 * Docker client configuration.
 */
const PASSED_THROUGH = [
  'DOCKER_HOST',
  'DOCKER_CONFIG',
  'NODE_IMAGE',
  'PG_MAJOR',
  'CADDY_BASE_IMAGE',
  'POSTGRES_IMAGE',
  'REDIS_IMAGE',
  'MAILPIT_IMAGE',
  'PROMETHEUS_IMAGE',
  'ALERTMANAGER_IMAGE',
  'NODE_EXPORTER_IMAGE',
  'POSTGRES_EXPORTER_IMAGE',
  'REDIS_EXPORTER_IMAGE',
];

export function machineEnv(): Record<string, string> {
  return Object.fromEntries(
    PASSED_THROUGH.flatMap((name) => {
      const value = process.env[name];
      return value ? [[name, value]] : [];
    }),
  );
}

/** lmsctl from the sources, in the repository, with only the machine's and the test's variables. */
export function lmsctl(args: string[], env: Record<string, string>, input?: string): Promise<CliRun> {
  return runLmsctl(args, { env: { ...machineEnv(), ...env }, cwd: repoRoot, ...(input ? { input } : {}) });
}

/** The Docker CLI (any version: only engine calls, never a build). */
export async function docker(args: string[], options: { input?: string; reject?: boolean } = {}) {
  const result = await execa('docker', args, {
    reject: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
  });
  if (options.reject !== false && result.exitCode !== 0) {
    throw new Error(`docker ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
  }
  return result;
}

export interface ProjectLeftovers {
  containers: string[];
  volumes: string[];
  networks: string[];
}

/** Whatever of a Compose project still exists on the engine. */
export async function leftovers(project: string): Promise<ProjectLeftovers> {
  const label = `label=com.docker.compose.project=${project}`;
  const names = async (args: string[]) =>
    (await docker(args)).stdout
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean);
  return {
    containers: await names(['ps', '-a', '--filter', label, '--format', '{{.Names}}']),
    volumes: await names(['volume', 'ls', '--filter', label, '--format', '{{.Name}}']),
    networks: await names(['network', 'ls', '--filter', label, '--format', '{{.Name}}']),
  };
}

/**
 * Removes a project's containers, volumes and networks with the engine alone (no Compose file
 * needed), for `finally` blocks and for projects left by killed runs.
 */
export async function removeProject(project: string): Promise<void> {
  const left = await leftovers(project);
  if (left.containers.length) await docker(['rm', '-f', '-v', ...left.containers], { reject: false });
  if (left.volumes.length) await docker(['volume', 'rm', '-f', ...left.volumes], { reject: false });
  if (left.networks.length) await docker(['network', 'rm', ...left.networks], { reject: false });
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; then throws with the last reason. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs = 120_000, intervalMs = 1000 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let reason = 'no answer';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s (${reason})`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The containers of one service of a project (Compose v1 and v2 name them differently). */
export async function containersOf(project: string, service: string): Promise<string[]> {
  const result = await docker([
    'ps',
    '-a',
    '--filter',
    `label=com.docker.compose.project=${project}`,
    '--filter',
    `label=com.docker.compose.service=${service}`,
    '--format',
    '{{.Names}}',
  ]);
  return result.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .sort();
}

export async function containerOf(project: string, service: string): Promise<string> {
  const [container] = await containersOf(project, service);
  if (!container) throw new Error(`no container of ${service} in ${project}`);
  return container;
}
