import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { stringify as toYaml, parse as parseYaml } from 'yaml';
import { CliError, ExitCode } from '../../errors.js';
import { lastLine, runCompose, type Compose, type StackTarget } from '../compose/compose-cli.js';
import { swarmStack, type SwarmStack } from './stack-file.js';

/** Every object `docker stack deploy` makes carries this label; so do the secrets and configs lmsctl makes. */
export const STACK_LABEL = 'com.docker.stack.namespace';

/** A stack on a Swarm: the Compose target it is made from and the engine (a manager) it runs on. */
export interface SwarmTarget {
  target: StackTarget;
  compose: Compose;
  docker: Docker;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface SwarmService {
  /** The service's name in the stack (api), not Swarm's (lms_api). */
  service: string;
  name: string;
  image: string;
  previousImage: string | null;
  replicas: number;
  running: number;
  /** Swarm's UpdateStatus.State (completed, rollback_completed, paused, …), null before any update. */
  updateState: string | null;
  updateMessage: string | null;
  /** When that update started (ms since the epoch), null before any. */
  updateStartedAt: number | null;
}

/** The parts of a Swarm task lmsctl reads (dockerode leaves tasks untyped). */
interface SwarmTask {
  ServiceID?: string;
  CreatedAt?: string;
  Status?: { State?: string; Err?: string; Timestamp?: string };
}

async function tasksOf(docker: Docker, filters: Record<string, string[]>): Promise<SwarmTask[]> {
  return (await docker.listTasks({ filters })) as SwarmTask[];
}

/** Whether the engine is an active Swarm manager (can deploy stacks). */
export async function isSwarmManager(docker: Docker): Promise<boolean> {
  // An engine that cannot say (an old or partial API) is no manager.
  const info = (await docker.info().catch(() => ({}))) as {
    Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean };
  };
  return info.Swarm?.LocalNodeState === 'active' && info.Swarm.ControlAvailable === true;
}

/** The services of a Swarm stack (none when the engine is no manager or the stack does not exist). */
export async function stackServices(docker: Docker, project: string): Promise<SwarmService[]> {
  if (!(await isSwarmManager(docker))) return [];
  const services = await docker.listServices({ filters: { label: [`${STACK_LABEL}=${project}`] } });
  const tasks = await tasksOf(docker, { label: [`${STACK_LABEL}=${project}`], 'desired-state': ['running'] });
  return services
    .map((service) => {
      const spec = service.Spec!;
      const name = spec.Name!;
      const status = (service as { UpdateStatus?: { State?: string; Message?: string; StartedAt?: string } })
        .UpdateStatus;
      const previous = (service as { PreviousSpec?: typeof spec }).PreviousSpec;
      const imageOf = (of: typeof spec) =>
        withoutDigest(
          (of.TaskTemplate as { ContainerSpec?: { Image?: string } } | undefined)?.ContainerSpec?.Image ?? '',
        );
      return {
        service: name.slice(project.length + 1),
        name,
        image: imageOf(spec),
        previousImage: previous ? imageOf(previous) : null,
        replicas: spec.Mode?.Replicated?.Replicas ?? 1,
        running: tasks.filter((task) => task.ServiceID === service.ID && task.Status?.State === 'running').length,
        updateState: status?.State ?? null,
        updateMessage: status?.Message ?? null,
        updateStartedAt: status?.StartedAt ? Date.parse(status.StartedAt) : null,
      };
    })
    .sort((a, b) => a.service.localeCompare(b.service));
}

/** `image@sha256:…` as Swarm may store it → the reference as given. */
function withoutDigest(image: string): string {
  return image.replace(/@sha256:[0-9a-f]+$/, '');
}

/** The Compose file, resolved with the stack's environment, as a Swarm stack. */
export async function resolveSwarmStack(swarm: SwarmTarget): Promise<SwarmStack> {
  const config: unknown = parseYaml(
    await runCompose(swarm.compose, swarm.target, ['config'], { cwd: swarm.cwd, stdout: 'capture' }),
  );
  const profiles = (swarm.env.COMPOSE_PROFILES ?? '').split(',').filter(Boolean);
  return swarmStack(config, swarm.target.project, { activeProfiles: profiles });
}

async function docker(swarm: SwarmTarget, args: string[], input?: string): Promise<string> {
  const result = await execa('docker', args, {
    env: swarm.env,
    reject: false,
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  if (result.exitCode !== 0) {
    throw new CliError(
      ExitCode.failed,
      `docker ${args.slice(0, 2).join(' ')} failed (exit code ${result.exitCode}): ${lastLine(result.stderr) || lastLine(result.stdout)}`,
    );
  }
  return result.stdout;
}

/**
 * `docker stack deploy` of the stack: first the secrets and configs it names that do not exist
 * yet (by content hash, so unchanged ones are reused), then the stack file, written to a private
 * temporary folder and removed again; then the stack's secrets and configs no service uses any
 * more are removed. Images are never resolved against a registry: the engine runs what it has.
 */
export async function deployStack(swarm: SwarmTarget, stack: SwarmStack): Promise<void> {
  const labels = ['--label', `${STACK_LABEL}=${swarm.target.project}`];
  const existingSecrets = new Set(
    (await swarm.docker.listSecrets()).map((secret) => (secret as { Spec?: { Name?: string } }).Spec?.Name),
  );
  for (const secret of stack.secrets) {
    if (!existingSecrets.has(secret.name))
      await docker(swarm, ['secret', 'create', ...labels, secret.name, '-'], secret.value);
  }
  const existingConfigs = new Set((await swarm.docker.listConfigs()).map((config) => config.Spec?.Name));
  for (const config of stack.configs) {
    if (!existingConfigs.has(config.name))
      await docker(swarm, ['config', 'create', ...labels, config.name, config.file]);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-stack-'));
  try {
    await chmod(dir, 0o700);
    const file = path.join(dir, 'stack.yml');
    // The bundled PostgreSQL's and Redis's passwords stay in their environment (their images
    // read no /run/secrets): the file is private and lives only for the deploy.
    await writeFile(file, toYaml(stack.file), { mode: 0o600 });
    await docker(swarm, [
      'stack',
      'deploy',
      '--resolve-image',
      'never',
      ...(stack.partial ? [] : ['--prune']),
      '-c',
      file,
      swarm.target.project,
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  if (!stack.partial) await removeUnused(swarm, stack);
}

async function removeUnused(swarm: SwarmTarget, stack: SwarmStack): Promise<void> {
  const filters = { label: [`${STACK_LABEL}=${swarm.target.project}`] };
  const keep = new Set([...stack.secrets.map((secret) => secret.name), ...stack.configs.map((config) => config.name)]);
  for (const secret of await swarm.docker.listSecrets({ filters })) {
    const name = (secret as { Spec?: { Name?: string } }).Spec?.Name;
    // In use by a task still shutting down: removed by a later deploy.
    if (name && !keep.has(name))
      await swarm.docker
        .getSecret(secret.ID)
        .remove()
        .catch(() => undefined);
  }
  for (const config of await swarm.docker.listConfigs({ filters })) {
    if (config.Spec?.Name && !keep.has(config.Spec.Name)) {
      await swarm.docker
        .getConfig(config.ID)
        .remove()
        .catch(() => undefined);
    }
  }
}

/**
 * Creates the stack's networks that do not exist yet, as `docker stack deploy` would (same name,
 * driver, options and namespace label, so the deploy adopts them): on a new stack the first
 * one-off container (the migrations) runs before the whole stack is deployed, and needs the
 * outbound network too when the database is a managed one.
 */
async function ensureNetworks(swarm: SwarmTarget, stack: SwarmStack): Promise<void> {
  const existing = new Set((await swarm.docker.listNetworks()).map((network) => network.Name));
  const declared = (stack.file.networks ?? {}) as Record<string, { internal?: boolean }>;
  for (const [name, network] of Object.entries(declared)) {
    const full = `${swarm.target.project}_${name}`;
    if (existing.has(full)) continue;
    await swarm.docker.createNetwork({
      Name: full,
      Driver: 'overlay',
      Attachable: true,
      Internal: network.internal === true,
      Labels: { [STACK_LABEL]: swarm.target.project },
    });
  }
}

/**
 * Runs `lmsctl <args>` of `image` in a one-off container on this node, on the stack's networks,
 * with the LMS processes' environment (secrets included, through a private env file removed
 * afterwards) and the backups volume: migrations, backups and the deploy record, which a Swarm
 * service could not run once and report back. Returns its standard output; its stderr is passed
 * on in the error when it fails.
 */
export async function runLmsctl(
  swarm: SwarmTarget,
  stack: SwarmStack,
  image: string,
  args: string[],
  input?: string,
): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-oneshot-'));
  const envFile = path.join(dir, 'env');
  let container: string | null = null;
  try {
    await chmod(dir, 0o700);
    await writeFile(
      envFile,
      Object.entries(stack.appEnvironment)
        .map(([key, value]) => `${key}=${value.replace(/\n/g, '')}`)
        .join('\n') + '\n',
      { mode: 0o600 },
    );
    await ensureNetworks(swarm, stack);
    const [first, ...more] = stack.appNetworks;
    const backups = `${swarm.target.project}_lms-backups`;
    const hasBackups = await swarm.docker
      .getVolume(backups)
      .inspect()
      .then(() => true)
      .catch(() => false);
    container = (
      await docker(swarm, [
        'create',
        '-i',
        '--env-file',
        envFile,
        '--user',
        '1000:1000',
        '--read-only',
        '--tmpfs',
        '/tmp',
        '--label',
        `${STACK_LABEL}.oneshot=${swarm.target.project}`,
        ...(first ? ['--network', first] : []),
        ...(hasBackups ? ['-v', `${backups}:/app/backups`] : []),
        image,
        'lmsctl',
        ...args,
      ])
    ).trim();
    for (const network of more) await docker(swarm, ['network', 'connect', network, container]);
    const result = await execa('docker', ['start', '-a', '-i', container], {
      env: swarm.env,
      reject: false,
      input: input ?? '',
    });
    if (result.exitCode !== 0) {
      const said = result.stderr
        .split('\n')
        .filter((line) => /^(error|hint|warning):/.test(line.trim()))
        .join(' ');
      throw new CliError(
        ExitCode.failed,
        `lmsctl ${args.join(' ')} (${image}) refused: ${said || lastLine(result.stderr) || `exit code ${result.exitCode}`}`,
      );
    }
    return result.stdout;
  } finally {
    if (container)
      await swarm.docker
        .getContainer(container)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `docker service update --image`: Swarm replaces the tasks one at a time as the stack's
 * update_config says (a task with a healthcheck counts only once healthy) and, when a new task
 * fails within `monitor`, rolls the service back by itself. lmsctl follows the update until it
 * completes, Swarm gives up, or `timeoutMs` passes — then lmsctl rolls it back itself. Returns
 * null when the update completed, else why it did not.
 */
export async function updateServiceImage(
  swarm: SwarmTarget,
  service: SwarmService,
  image: string,
  timeoutMs: number,
): Promise<string | null> {
  const started = Date.now();
  await docker(swarm, [
    'service',
    'update',
    '--detach',
    '--quiet',
    '--no-resolve-image',
    '--image',
    image,
    service.name,
  ]);
  for (;;) {
    const now = await current(swarm, service);
    if (!now) return `${service.name} no longer exists`;
    const ours = (now.updateStartedAt ?? 0) >= started - 5_000;
    if (ours && now.updateState === 'completed') return null;
    if (ours && now.updateState && ROLLED_BACK.has(now.updateState)) {
      // Swarm is (or was) rolling back by itself: let it finish, then say why.
      await untilSettled(swarm, service, timeoutMs);
      const settled = await current(swarm, service);
      return `Swarm rolled ${service.service} back${settled?.updateMessage ? `: ${settled.updateMessage}` : ''}${(await lastTaskError(swarm, service)) ?? ''}`;
    }
    if (Date.now() - started > timeoutMs) {
      const reason = `the new ${service.service} tasks were not running and healthy within ${Math.round(timeoutMs / 1000)} s${(await lastTaskError(swarm, service)) ?? ''}`;
      await rollbackService(swarm, service, timeoutMs);
      return reason;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** `docker service rollback`: back to the service's previous spec, one task at a time. */
export async function rollbackService(swarm: SwarmTarget, service: SwarmService, timeoutMs: number): Promise<void> {
  await docker(swarm, ['service', 'rollback', '--detach', '--quiet', service.name]);
  await untilSettled(swarm, service, timeoutMs);
}

async function current(swarm: SwarmTarget, service: SwarmService): Promise<SwarmService | undefined> {
  return (await stackServices(swarm.docker, swarm.target.project)).find((candidate) => candidate.name === service.name);
}

/** Until the service's update or rollback is no longer moving (or the timeout). */
async function untilSettled(swarm: SwarmTarget, service: SwarmService, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const now = await current(swarm, service);
    if (!now || !['updating', 'rollback_started'].includes(now.updateState ?? '')) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Tasks of the service that failed (or were rejected) since `sinceMs`: what a watch window looks for. */
export async function failedTasksSince(swarm: SwarmTarget, service: SwarmService, sinceMs: number): Promise<string[]> {
  const tasks = await tasksOf(swarm.docker, { service: [service.name] });
  return tasks
    .filter(
      (task) =>
        ['failed', 'rejected'].includes(task.Status?.State ?? '') &&
        Date.parse(String(task.Status?.Timestamp)) >= sinceMs,
    )
    .map((task) => task.Status?.Err ?? task.Status?.State ?? 'failed');
}

/** Update states in which Swarm gave up on a service's new spec. */
const ROLLED_BACK = new Set(['rollback_started', 'rollback_completed', 'rollback_paused', 'paused']);

/** All replicas run, and no update is still replacing tasks (the old ones count as running meanwhile). */
function converged(service: SwarmService): boolean {
  return service.running >= service.replicas && service.updateState !== 'updating';
}

/**
 * Waits until every service of the stack runs all its replicas (Swarm counts a task with a
 * healthcheck as running only once it is healthy); the services not there yet when time runs out.
 */
export async function waitForStack(
  swarm: SwarmTarget,
  timeoutMs: number,
  onProgress: (services: SwarmService[]) => void = () => undefined,
): Promise<SwarmService[]> {
  const started = Date.now();
  for (;;) {
    const services = await stackServices(swarm.docker, swarm.target.project);
    onProgress(services);
    // Of an update since this wait began: an earlier deploy's rollback says nothing about now.
    const rolledBack = services.find(
      (service) => ROLLED_BACK.has(service.updateState ?? '') && (service.updateStartedAt ?? 0) >= started - 5_000,
    );
    if (rolledBack) {
      throw new CliError(
        ExitCode.failed,
        `Swarm ${rolledBack.updateState} ${rolledBack.service}${rolledBack.updateMessage ? `: ${rolledBack.updateMessage}` : ''}`,
        `docker service ps ${rolledBack.name} --no-trunc shows why`,
      );
    }
    if (services.length && services.every(converged)) return services;
    if (Date.now() - started > timeoutMs) {
      const late = services.filter((service) => !converged(service));
      const described: string[] = [];
      for (const service of late) {
        described.push(
          `${service.service} (${service.running}/${service.replicas}${(await lastTaskError(swarm, service)) ?? ''})`,
        );
      }
      throw new CliError(
        ExitCode.failed,
        `not running after ${Math.round(timeoutMs / 1000)} s: ${described.join(', ') || 'no services'}`,
        `docker service ps ${late[0]?.name ?? swarm.target.project} --no-trunc shows why`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Why the service's latest task ended, if one failed: `: task: non-zero exit (1)`. */
export async function lastTaskError(swarm: SwarmTarget, service: SwarmService): Promise<string | null> {
  const tasks = await tasksOf(swarm.docker, { service: [service.name] });
  const failed = tasks
    .filter((task) => task.Status?.Err)
    .sort((a, b) => String(b.CreatedAt).localeCompare(String(a.CreatedAt)))[0];
  return failed ? `: ${failed.Status!.Err}` : null;
}

/**
 * `docker stack rm`, then waits until its containers and networks are gone; with `volumes`,
 * removes the stack's named volumes on this node too (Swarm never does).
 */
export async function removeStack(swarm: SwarmTarget, volumes: boolean): Promise<string[]> {
  await docker(swarm, ['stack', 'rm', swarm.target.project]);
  const filters = { label: [`${STACK_LABEL}=${swarm.target.project}`] };
  const deadline = Date.now() + 120_000;
  for (;;) {
    const [containers, networks] = await Promise.all([
      swarm.docker.listContainers({ all: true, filters }),
      swarm.docker.listNetworks({ filters }),
    ]);
    if (containers.length === 0 && networks.length === 0) break;
    if (Date.now() > deadline) {
      throw new CliError(ExitCode.failed, `${swarm.target.project}: containers or networks still there after 2 min`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (!volumes) return [];
  const names = ((await swarm.docker.listVolumes({ filters })).Volumes ?? []).map((volume) => volume.Name);
  for (const name of names) await swarm.docker.getVolume(name).remove();
  return names;
}

/** The stack's named volumes on this node (what `down --volumes` would delete). */
export async function stackVolumes(swarm: SwarmTarget): Promise<string[]> {
  const filters = { label: [`${STACK_LABEL}=${swarm.target.project}`] };
  return ((await swarm.docker.listVolumes({ filters })).Volumes ?? []).map((volume) => volume.Name);
}
