import type Docker from 'dockerode';
import { parse as parseYaml } from 'yaml';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode } from '../../errors.js';
import { composeCommand, resolveStack, runCompose, type StackSelection } from '../../lib/compose/compose-cli.js';
import type { ServiceState } from '../../lib/compose/docker-engine.js';
import { serviceImages } from '../../lib/compose/stack-images.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { startProgress } from '../../lib/progress.js';
import { swarmStack, MIGRATE_SERVICE, type SwarmStack } from '../../lib/swarm/stack-file.js';
import {
  deployStack,
  isSwarmManager,
  removeStack,
  runLmsctl,
  stackServices,
  stackVolumes,
  waitForStack,
  type SwarmService,
  type SwarmTarget,
} from '../../lib/swarm/swarm.js';
import { buildImages, pullMissing, requireEngine, type UpResult } from '../../lib/compose/stack-setup.js';

export type Orchestrator = 'compose' | 'swarm';

/**
 * Which orchestrator runs the stack: the one asked for, else Swarm when the engine is a Swarm
 * manager that runs a stack of this project, else Compose.
 */
export async function chooseOrchestrator(
  docker: Docker,
  project: string,
  requested: Orchestrator | undefined,
): Promise<Orchestrator> {
  if (requested) return requested;
  return (await stackServices(docker, project)).length > 0 ? 'swarm' : 'compose';
}

/** The Swarm stack the options address; refuses dev (and observability) and an engine that is no manager. */
export async function openSwarm(ctx: CommandContext, options: StackSelection): Promise<SwarmTarget> {
  const target = resolveStack({ ...options, envFile: ctx.envFile }, ctx.env, ctx.cwd);
  if (target.env !== 'prod' && target.env !== 'staging') {
    throw new CliError(
      ExitCode.usage,
      `only the prod and staging stacks run on Swarm, not ${target.env}`,
      'use --env prod or --env staging, or drop --orchestrator swarm',
    );
  }
  const docker = await requireEngine(ctx);
  if (!(await isSwarmManager(docker))) {
    throw new CliError(
      ExitCode.failed,
      'this Docker engine is not a Swarm manager',
      'run lmsctl on a manager (DOCKER_HOST), or make this one a single-node Swarm: docker swarm init',
    );
  }
  return { target, compose: await composeCommand(ctx.env, target), docker, cwd: ctx.cwd, env: ctx.env };
}

/**
 * `lmsctl up --orchestrator swarm`: the prod Compose file as a Swarm stack (see stack-file.ts).
 * Images are built or pulled as for Compose; on a new stack PostgreSQL and Redis are deployed
 * first; then the migrations run once, in a one-off container of the LMS image, and only then
 * does the whole stack deploy — the order the Compose file's depends_on gives, which Swarm ignores.
 */
export async function swarmUp(
  ctx: CommandContext,
  options: StackSelection & { build?: boolean; wait?: boolean; timeoutMs?: number },
): Promise<UpResult> {
  const swarm = await openSwarm(ctx, options);
  const { target } = swarm;
  const config: unknown = parseYaml(
    await runCompose(swarm.compose, target, ['config'], { cwd: ctx.cwd, stdout: 'capture' }),
  );
  const profiles = (ctx.env.COMPOSE_PROFILES ?? '').split(',').filter(Boolean);
  const stack = swarmStack(config, target.project, { activeProfiles: profiles });

  const running = await stackServices(swarm.docker, target.project);
  refuseUndoingDeploy(swarm, stack, running);
  const images = serviceImages(config, [...Object.keys(stack.file.services as object), MIGRATE_SERVICE]);
  await pullMissing(ctx, swarm.docker, swarm.compose, target, images);
  const built = await buildImages(ctx, swarm.docker, images, options.build ?? false);

  const started = Date.now();
  const timeout = options.timeoutMs ?? 300_000;
  if (!running.some((service) => service.service === 'postgres' && service.running > 0)) {
    ctx.out.info(`${target.project}: PostgreSQL and Redis first`);
    await deployStack(swarm, onlyServices(stack, ['postgres', 'redis']));
    await waitForStack(swarm, timeout);
  }
  ctx.out.info(`${target.project}: migrations (lmsctl migrate, ${stack.appImage})`);
  await runLmsctl(swarm, stack, stack.appImage, ['migrate']);
  await deployStack(swarm, stack);
  if (!options.wait) return { env: target.env, project: target.project, built, services: [], waitedMs: null };

  let readiness = '';
  const progress = startProgress(ctx.out, 'waiting for the services:', () => readiness);
  try {
    const services = await waitForStack(swarm, Math.max(timeout - (Date.now() - started), 1000), (now) => {
      readiness = `${now.filter((service) => service.running >= service.replicas).length}/${now.length} running`;
    });
    return {
      env: target.env,
      project: target.project,
      built,
      services: services.map(asServiceState),
      waitedMs: Date.now() - started,
    };
  } finally {
    progress.stop();
  }
}

/** The stack with only these services (and everything they reference), deployed without --prune. */
function onlyServices(stack: SwarmStack, names: string[]): SwarmStack {
  const services = Object.fromEntries(
    Object.entries(stack.file.services as Record<string, unknown>).filter(([name]) => names.includes(name)),
  );
  return { ...stack, file: { ...stack.file, services }, partial: true };
}

/**
 * After `lmsctl deploy` the services run the deployed image while the env file may still name the
 * one before: deploying the stack file would put every service back on it. Refused, naming both.
 */
function refuseUndoingDeploy(swarm: SwarmTarget, stack: SwarmStack, running: SwarmService[]): void {
  const api = running.find((service) => service.service === 'api');
  if (!api || api.image === stack.appImage) return;
  throw new CliError(
    ExitCode.usage,
    `${swarm.target.project} runs ${api.image} but LMS_IMAGE says ${stack.appImage}: up would move every service to it`,
    `set LMS_IMAGE=${api.image}${swarm.target.envFile ? ` in ${swarm.target.envFile}` : ''}, or change images with a rollout: lmsctl deploy --image ${stack.appImage}`,
  );
}

/** A Swarm service as `ps` and `up --json` show services: running once all its replicas run. */
export function asServiceState(service: SwarmService): ServiceState {
  const complete = service.running >= service.replicas;
  return {
    service: service.service,
    container: service.name,
    state: complete ? 'running' : 'starting',
    health: complete ? 'healthy' : 'starting',
    status: `${service.running}/${service.replicas} tasks running${service.updateState ? `, update ${service.updateState}` : ''}`,
    exitCode: null,
    ports: [],
  };
}

export async function swarmPs(
  ctx: CommandContext,
  options: StackSelection,
): Promise<{ project: string; services: ServiceState[] }> {
  const swarm = await openSwarm(ctx, options);
  return {
    project: swarm.target.project,
    services: (await stackServices(swarm.docker, swarm.target.project)).map(asServiceState),
  };
}

/** `docker stack rm`; with --volumes it names the volumes it destroys and asks first. */
export async function swarmDown(
  ctx: CommandContext,
  options: StackSelection & { volumes?: boolean },
): Promise<{ project: string; volumesRemoved: boolean }> {
  const swarm = await openSwarm(ctx, options);
  const project = swarm.target.project;
  if (options.volumes) {
    const volumes = await stackVolumes(swarm);
    ctx.out.info(
      `this deletes the volumes of ${project} on this node${volumes.length ? `: ${volumes.join(', ')}` : ''} — the database, Redis data, backups and metrics kept in them are lost`,
    );
    await confirmOrRefuse(`Delete the volumes of ${project}?`, {
      yes: ctx.yes,
      action: `delete the volumes of ${project}`,
    });
  }
  await removeStack(swarm, Boolean(options.volumes));
  return { project, volumesRemoved: Boolean(options.volumes) };
}
