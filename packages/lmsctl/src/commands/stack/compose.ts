import net from 'node:net';
import type { ChalkInstance } from 'chalk';
import type Docker from 'dockerode';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode } from '../../errors.js';
import { parse as parseYaml } from 'yaml';
import { errorMessage, maskSecretsInText, redactSecrets } from '@lms/core';
import {
  composeCommand,
  resolveStack,
  runCompose,
  type Compose,
  type StackEnv,
  type StackSelection,
  type StackTarget,
} from '../../lib/compose/compose-cli.js';
import { publishedPorts, serviceImages, servicesToStart, type PublishedPort } from '../../lib/compose/stack-images.js';
import { startProgress } from '../../lib/progress.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { connectEngine, logTail, projectServices, type ServiceState } from '../../lib/compose/docker-engine.js';
import { table } from '../../output.js';
import {
  buildImages,
  composeOutput,
  pullMissing,
  requireEngine,
  type UpResult,
} from '../../lib/compose/stack-setup.js';

export type { UpResult } from '../../lib/compose/stack-setup.js';

export type StackOptions = StackSelection;

async function openStack(
  ctx: CommandContext,
  options: StackOptions,
): Promise<{ target: StackTarget; compose: Compose }> {
  const target = resolveStack({ ...options, envFile: ctx.envFile }, ctx.env, ctx.cwd);
  return { target, compose: await composeCommand(ctx.env, target) };
}

/**
 * Starts a stack: the images it lacks first (pulled, or built with BuildKit whatever Compose is
 * installed), then `compose up -d --no-build`; with --wait follows every container through the
 * Engine API until all are healthy (or running without a healthcheck, or exited 0 for one-shot
 * services such as migrate), any fails, or the timeout. When starting fails on a project that did
 * not exist before, what the attempt created (network, volumes) is removed again.
 */
export async function stackUp(
  ctx: CommandContext,
  options: StackOptions & { services?: string[]; build?: boolean; wait?: boolean; timeoutMs?: number; pollMs?: number },
): Promise<UpResult> {
  const { target, compose } = await openStack(ctx, options);
  const docker = await requireEngine(ctx);
  const config: unknown = parseYaml(await runCompose(compose, target, ['config'], { cwd: ctx.cwd, stdout: 'capture' }));
  const profiles = (ctx.env.COMPOSE_PROFILES ?? '').split(',').filter(Boolean);
  const starting = servicesToStart(config, options.services ?? [], profiles);
  const images = serviceImages(config, starting);
  const existedBefore = await projectExists(docker, target.project);
  if (target.env !== 'dev' && existedBefore) await refuseUndoingDeploy(ctx, docker, target);

  // Before anything is pulled, built or created: Compose would fail half-way on a taken port.
  if (!existedBefore) await refuseTakenPorts(target, publishedPorts(config, starting));
  await pullMissing(ctx, docker, compose, target, images);
  const built = await buildImages(ctx, docker, images, options.build ?? false);
  try {
    await runCompose(compose, target, ['up', '-d', '--no-build', ...(options.services ?? [])], {
      cwd: ctx.cwd,
      stdout: composeOutput(ctx),
    });
  } catch (error) {
    if (!existedBefore) await removeAttempt(ctx, compose, target);
    throw error;
  }
  if (!options.wait) return { env: target.env, project: target.project, built, services: [], waitedMs: null };

  const started = Date.now();
  const timeout = options.timeoutMs ?? 300_000;
  let readiness = '';
  const progress = startProgress(ctx.out, 'waiting for health:', () => readiness);
  try {
    for (;;) {
      const services = (await projectServices(docker, target.project)).filter(
        (service) => !options.services?.length || options.services.includes(service.service),
      );
      const failed = services.filter((service) => serviceStatus(service) === 'failed');
      const ready = services.filter((service) => serviceStatus(service) === 'ready');
      readiness = `${ready.length}/${services.length} ready`;
      if (failed.length) {
        progress.stop();
        await reportUnhealthy(ctx, docker, failed);
        throw new CliError(
          ExitCode.failed,
          `${failed.map((service) => service.service).join(', ')} failed to start`,
          `\`lmsctl logs <service>${target.env === 'dev' ? '' : ` --env ${target.env}`}\` shows more`,
        );
      }
      if (services.length > 0 && ready.length === services.length) {
        return { env: target.env, project: target.project, built, services, waitedMs: Date.now() - started };
      }
      if (Date.now() - started > timeout) {
        progress.stop();
        const late = services.filter((service) => !ready.includes(service));
        await reportUnhealthy(ctx, docker, late);
        throw new CliError(
          ExitCode.failed,
          `not healthy after ${formatDuration(timeout)}: ${late.map((service) => `${service.service} (${service.health ?? service.state})`).join(', ') || 'no containers'}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    progress.stop();
  }
}

/**
 * Where a container stands for `up --wait` and `ps`. An exited container is judged by its exit
 * code alone: a one-shot service (migrate) is done when it exited 0 — Docker reports any stopped
 * container that has a healthcheck as unhealthy, which says nothing about how it ended.
 */
export function serviceStatus(service: ServiceState): 'ready' | 'failed' | 'starting' {
  if (service.state === 'exited') return service.exitCode === 0 ? 'ready' : 'failed';
  if (service.state === 'dead') return 'failed';
  if (service.health === 'unhealthy') return 'failed';
  if (service.state === 'running' && (service.health === null || service.health === 'healthy')) return 'ready';
  return 'starting';
}

async function projectExists(docker: Docker, project: string): Promise<boolean> {
  const filters = { label: [`com.docker.compose.project=${project}`] };
  const [containers, volumes, networks] = await Promise.all([
    docker.listContainers({ all: true, filters }),
    docker.listVolumes({ filters }),
    docker.listNetworks({ filters }),
  ]);
  return containers.length > 0 || (volumes.Volumes ?? []).length > 0 || networks.length > 0;
}

/**
 * After `lmsctl deploy`, the running API containers carry the deployed image while the env file
 * may still name the one before: `up` would recreate every container on it at once — an
 * undeploy without a rollout. Refused, naming both.
 */
async function refuseUndoingDeploy(ctx: CommandContext, docker: Docker, target: StackTarget): Promise<void> {
  const { currentImage, historyFile, readHistory } = await import('../../deploy/history.js');
  const deployed = currentImage(await readHistory(historyFile(target.project, ctx.env)));
  const wanted = ctx.env.LMS_IMAGE || 'lms:latest';
  if (!deployed || deployed === wanted) return;
  const running = await docker.listContainers({
    filters: { label: [`com.docker.compose.project=${target.project}`, 'com.docker.compose.service=api'] },
  });
  if (!running.some((container) => container.Image === deployed)) return;
  throw new CliError(
    ExitCode.usage,
    `${target.project} runs ${deployed} (lmsctl deploy) but LMS_IMAGE says ${wanted}: up would recreate every container on it at once`,
    `set LMS_IMAGE=${deployed}${target.envFile ? ` in ${target.envFile}` : ''}, or change images with a rollout: lmsctl deploy --image ${wanted}`,
  );
}

/** The variables that move the dev stack's published ports (compose/docker-compose.yml). */
const DEV_PORT_VARIABLES: Record<string, string[]> = {
  api: ['DEV_API_PORT'],
  worker: ['DEV_WORKER_METRICS_PORT'],
  postgres: ['DEV_POSTGRES_PORT'],
  redis: ['DEV_REDIS_PORT'],
  mailpit: ['DEV_MAILPIT_UI_PORT', 'DEV_SMTP_PORT'],
};

/**
 * Every host port the new stack would publish must be free: on a machine that already runs
 * PostgreSQL or Redis on their usual ports, Compose would otherwise start half the stack and
 * stop at "port is already allocated".
 */
async function refuseTakenPorts(target: StackTarget, ports: PublishedPort[]): Promise<void> {
  const taken: PublishedPort[] = [];
  for (const published of ports) if (!(await canListen(published.host, published.port))) taken.push(published);
  if (taken.length === 0) return;
  const where = taken.map((published) => `${published.host}:${published.port} (${published.service})`).join(', ');
  const variables = taken.flatMap((published) => DEV_PORT_VARIABLES[published.service] ?? []);
  throw new CliError(
    ExitCode.failed,
    `${where} ${taken.length === 1 ? 'is' : 'are'} already in use on this host; nothing was started`,
    target.env === 'dev'
      ? `move ${variables.length ? variables.join(', ') : 'the DEV_*_PORT variables'} (e.g. DEV_POSTGRES_PORT=15432), or run the dev stack on what this machine has: lmsctl up --native`
      : 'free the port, or move it (HTTP_PORT, HTTPS_PORT, PROMETHEUS_PORT, …: compose/README.md)',
  );
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

async function removeAttempt(ctx: CommandContext, compose: Compose, target: StackTarget): Promise<void> {
  try {
    await runCompose(compose, target, ['down', '--volumes', '--remove-orphans'], {
      cwd: ctx.cwd,
      stdout: 'capture',
      stderr: 'capture',
    });
    ctx.out.warn(`removed what this attempt created for ${target.project} (containers, network, volumes)`);
  } catch (error) {
    ctx.out.warn(
      `could not remove what this attempt created for ${target.project}: ${errorMessage(error)} — \`lmsctl down --project-name ${target.project} --volumes\` does`,
    );
  }
}

async function reportUnhealthy(ctx: CommandContext, docker: Docker, services: ServiceState[]): Promise<void> {
  for (const service of services) {
    ctx.out.warn(
      `${service.service}: ${service.state === 'exited' ? 'exited' : (service.health ?? service.state)}${service.exitCode !== null ? ` (exit code ${service.exitCode})` : ''} — last log lines:`,
    );
    for (const line of await logTail(docker, service.container).catch(() => ['(no logs)'])) ctx.out.info(`  ${line}`);
  }
}

export function renderUp(result: UpResult, style: ChalkInstance): string {
  const built = result.built.length ? `built ${result.built.join(', ')}\n` : '';
  if (result.waitedMs === null)
    return `${built}${result.project} (${result.env}) started; \`lmsctl ps\` shows its health`;
  return `${built}${renderServices(result.services, style)}\n\n${style.green('healthy')}: ${result.project} (${result.env}) after ${formatDuration(result.waitedMs)}`;
}

/** `docker compose down`; with --volumes it names the volumes it destroys and asks first. */
export async function stackDown(
  ctx: CommandContext,
  options: StackOptions & { volumes?: boolean },
): Promise<{ project: string; volumesRemoved: boolean }> {
  const { target, compose } = await openStack(ctx, options);
  if (options.volumes) {
    const docker = await connectEngine(ctx.env);
    const volumes = docker
      ? (
          (await docker.listVolumes({ filters: { label: [`com.docker.compose.project=${target.project}`] } }))
            .Volumes ?? []
        ).map((volume) => volume.Name)
      : [];
    ctx.out.info(
      `this deletes the volumes of ${target.project}${volumes.length ? `: ${volumes.join(', ')}` : ''} — the database, Redis data, backups and metrics kept in them are lost`,
    );
    await confirmOrRefuse(`Delete the volumes of ${target.project}?`, {
      yes: ctx.yes,
      action: `delete the volumes of ${target.project}`,
    });
  }
  await runCompose(compose, target, ['down', '--remove-orphans', ...(options.volumes ? ['--volumes'] : [])], {
    cwd: ctx.cwd,
    stdout: composeOutput(ctx),
  });
  return { project: target.project, volumesRemoved: Boolean(options.volumes) };
}

export async function stackPs(
  ctx: CommandContext,
  options: StackOptions,
): Promise<{ project: string; services: ServiceState[] }> {
  const target = resolveStack({ ...options, envFile: ctx.envFile }, ctx.env, ctx.cwd);
  const docker = await requireEngine(ctx);
  return { project: target.project, services: await projectServices(docker, target.project) };
}

export function renderServices(services: ServiceState[], style: ChalkInstance): string {
  if (services.length === 0) return 'no containers';
  const mark = (service: ServiceState) => {
    const status = serviceStatus(service);
    // An exited container shows how it ended: "exited 0" is a finished one-shot service.
    const text =
      service.state === 'exited' ? `exited ${service.exitCode ?? ''}`.trim() : (service.health ?? service.state);
    return status === 'ready' ? style.green(text) : status === 'failed' ? style.red(text) : style.yellow(text);
  };
  return table(
    ['SERVICE', 'CONTAINER', 'STATE', 'HEALTH', 'PORTS'],
    services.map((service) => [
      service.service,
      service.container,
      service.state,
      mark(service),
      service.ports.join(', '),
    ]),
    style,
  );
}

/** One line of `logs --json`: the container compose named (null for its own messages) and the line. */
export interface LogLine {
  container: string | null;
  line: string;
}

/**
 * Splits compose's `container  | text` (the same in Compose v1 and v2); other lines are compose's
 * own. Passwords in URLs and `password=…` pairs are masked: --json output never carries secrets.
 */
export function parseLogLine(text: string): LogLine {
  const match = /^(\S+)\s+\| ?(.*)$/.exec(text);
  return match
    ? { container: match[1]!, line: maskSecretsInText(match[2]!) }
    : { container: null, line: maskSecretsInText(text) };
}

/**
 * The logs of the stack on stdout as compose prints them; with --json one JSON object per line
 * ({"container", "line"}, secrets masked), as they come (with --follow until Ctrl-C).
 */
export async function stackLogs(
  ctx: CommandContext,
  options: StackOptions & { service?: string; follow?: boolean; tail?: number },
): Promise<void> {
  const { target, compose } = await openStack(ctx, options);
  const stdout = ctx.out.streams.stdout;
  // Compose colours its output even into a pipe: escape codes only reach a terminal.
  const colour = !ctx.json && stdout.isTTY === true && !('NO_COLOR' in ctx.env);
  const args = [
    'logs',
    ...(colour ? [] : ['--no-color']),
    ...(options.follow ? ['-f'] : []),
    ...(options.tail !== undefined ? ['--tail', String(options.tail)] : []),
  ];
  if (options.service) args.push(options.service);
  await runCompose(compose, target, args, {
    cwd: ctx.cwd,
    stdout: ctx.json ? (line) => stdout.write(`${JSON.stringify(parseLogLine(line))}\n`) : 'inherit',
  });
}

export async function stackRestart(
  ctx: CommandContext,
  options: StackOptions & { service?: string },
): Promise<{ project: string; restarted: string }> {
  const { target, compose } = await openStack(ctx, options);
  await runCompose(compose, target, ['restart', ...(options.service ? [options.service] : [])], {
    cwd: ctx.cwd,
    stdout: composeOutput(ctx),
  });
  return { project: target.project, restarted: options.service ?? 'all services' };
}

export interface ConfigResult {
  env: StackEnv;
  project: string;
  /** Compose's YAML as it printed it (the human output). */
  yaml: string;
  /** The same, parsed, with secrets masked (the --json output). */
  config: unknown;
}

/** The resolved Compose configuration (what `up` would run), for review. */
export async function stackConfig(ctx: CommandContext, options: StackOptions): Promise<ConfigResult> {
  const { target, compose } = await openStack(ctx, options);
  // YAML from every Compose version (v1 has no --format json), parsed here for --json.
  const yaml = await runCompose(compose, target, ['config'], { cwd: ctx.cwd, stdout: 'capture' });
  return { env: target.env, project: target.project, yaml, config: redactComposeConfig(parseYaml(yaml)) };
}

/**
 * The configuration with secrets masked: fields named like secrets, and passwords in URLs. Each
 * service on its own, as their environments lie deeper than redactSecrets walks from the top.
 */
function redactComposeConfig(config: unknown): unknown {
  if (!isRecord(config) || !isRecord(config.services)) return redactSecrets(config);
  const services = Object.fromEntries(
    Object.entries(config.services).map(([name, service]) => [name, redactSecrets(service)]),
  );
  return { ...(redactSecrets({ ...config, services: {} }) as Record<string, unknown>), services };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
