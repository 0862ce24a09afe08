import type { ChalkInstance } from 'chalk';
import type Docker from 'dockerode';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode } from '../../errors.js';
import { parse as parseYaml } from 'yaml';
import { maskSecretsInText, redactSecrets } from '@lms/core';
import {
  composeArgs,
  composeCommand,
  projectOf,
  runCompose,
  type ComposeOutput,
  type StackEnv,
} from '../../lib/compose/compose-cli.js';
import { startProgress } from '../../lib/progress.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { connectEngine, logTail, projectServices, type ServiceState } from '../../lib/compose/docker-engine.js';
import { table } from '../../output.js';

export interface StackOptions {
  env?: StackEnv;
  /** Compose folder (tests point it elsewhere). */
  composeDir?: string;
}

function common(ctx: CommandContext, options: StackOptions): string[] {
  return composeArgs(options.env ?? 'dev', { envFile: ctx.envFile, dir: options.composeDir });
}

/** Compose's own progress and messages: on the terminal, or on stderr with --json (stdout is the result). */
function composeOutput(ctx: CommandContext): ComposeOutput {
  return ctx.json ? 'stderr' : 'inherit';
}

async function requireEngine(ctx: CommandContext): Promise<Docker> {
  const docker = await connectEngine(ctx.env);
  if (!docker) {
    throw new CliError(
      ExitCode.failed,
      'no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)',
      'start Docker, or run the dev stack as local processes: lmsctl up --native',
    );
  }
  return docker;
}

export interface UpResult {
  env: StackEnv;
  project: string;
  services: ServiceState[];
  waitedMs: number | null;
}

/**
 * `docker compose up -d`, then with --wait follows every container's health through the Engine
 * API until all are healthy (or running, without a healthcheck), any fails, or the timeout.
 */
export async function stackUp(
  ctx: CommandContext,
  options: StackOptions & { services?: string[]; build?: boolean; wait?: boolean; timeoutMs?: number; pollMs?: number },
): Promise<UpResult> {
  const env = options.env ?? 'dev';
  const compose = await composeCommand(ctx.env);
  const args = [
    ...common(ctx, options),
    'up',
    '-d',
    ...(options.build ? ['--build'] : []),
    ...(options.services ?? []),
  ];
  await runCompose(compose, args, { env: ctx.env, cwd: ctx.cwd, stdout: composeOutput(ctx) });
  if (!options.wait) return { env, project: projectOf(env), services: [], waitedMs: null };

  const docker = await requireEngine(ctx);
  const started = Date.now();
  const timeout = options.timeoutMs ?? 300_000;
  let readiness = '';
  const progress = startProgress(ctx.out, 'waiting for health:', () => readiness);
  try {
    for (;;) {
      const services = (await projectServices(docker, projectOf(env))).filter(
        (service) => !options.services?.length || options.services.includes(service.service),
      );
      const failed = services.filter(
        (service) =>
          service.health === 'unhealthy' ||
          (service.state === 'exited' && service.exitCode !== 0) ||
          service.state === 'dead',
      );
      // One-shot services (migrate) are done when they exited 0.
      const ready = services.filter(
        (service) =>
          (service.state === 'running' && (service.health === null || service.health === 'healthy')) ||
          (service.state === 'exited' && service.exitCode === 0),
      );
      readiness = `${ready.length}/${services.length} ready`;
      if (failed.length) {
        progress.stop();
        await reportUnhealthy(ctx, docker, failed);
        throw new CliError(
          ExitCode.failed,
          `${failed.map((service) => service.service).join(', ')} failed to start`,
          '`lmsctl logs <service>` shows more',
        );
      }
      if (services.length > 0 && ready.length === services.length) {
        return { env, project: projectOf(env), services, waitedMs: Date.now() - started };
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

async function reportUnhealthy(ctx: CommandContext, docker: Docker, services: ServiceState[]): Promise<void> {
  for (const service of services) {
    ctx.out.warn(
      `${service.service}: ${service.health ?? service.state}${service.exitCode !== null ? ` (exit code ${service.exitCode})` : ''} — last log lines:`,
    );
    for (const line of await logTail(docker, service.container).catch(() => ['(no logs)'])) ctx.out.info(`  ${line}`);
  }
}

export function renderUp(result: UpResult, style: ChalkInstance): string {
  if (result.waitedMs === null) return `${result.project} (${result.env}) started; \`lmsctl ps\` shows its health`;
  return `${renderServices(result.services, style)}\n\n${style.green('healthy')}: ${result.project} (${result.env}) after ${formatDuration(result.waitedMs)}`;
}

/** `docker compose down`; with --volumes it names the volumes it destroys and asks first. */
export async function stackDown(
  ctx: CommandContext,
  options: StackOptions & { volumes?: boolean },
): Promise<{ project: string; volumesRemoved: boolean }> {
  const env = options.env ?? 'dev';
  const compose = await composeCommand(ctx.env);
  if (options.volumes) {
    const docker = await connectEngine(ctx.env);
    const volumes = docker
      ? (
          (await docker.listVolumes({ filters: { label: [`com.docker.compose.project=${projectOf(env)}`] } }))
            .Volumes ?? []
        ).map((volume) => volume.Name)
      : [];
    ctx.out.info(
      `this deletes the volumes of ${projectOf(env)}${volumes.length ? `: ${volumes.join(', ')}` : ''} — the database, Redis data, backups and metrics kept in them are lost`,
    );
    await confirmOrRefuse(`Delete the volumes of ${projectOf(env)}?`, {
      yes: ctx.yes,
      action: `delete the volumes of ${projectOf(env)}`,
    });
  }
  await runCompose(compose, [...common(ctx, options), 'down', ...(options.volumes ? ['--volumes'] : [])], {
    env: ctx.env,
    cwd: ctx.cwd,
    stdout: composeOutput(ctx),
  });
  return { project: projectOf(env), volumesRemoved: Boolean(options.volumes) };
}

export async function stackPs(
  ctx: CommandContext,
  options: StackOptions,
): Promise<{ project: string; services: ServiceState[] }> {
  const docker = await requireEngine(ctx);
  const project = projectOf(options.env ?? 'dev');
  return { project, services: await projectServices(docker, project) };
}

export function renderServices(services: ServiceState[], style: ChalkInstance): string {
  if (services.length === 0) return 'no containers';
  const mark = (service: ServiceState) =>
    service.health === 'healthy' || (service.state === 'running' && service.health === null)
      ? style.green(service.health ?? service.state)
      : service.health === 'unhealthy' || service.state === 'exited'
        ? style.red(service.health ?? `${service.state} ${service.exitCode ?? ''}`.trim())
        : style.yellow(service.health ?? service.state);
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
  const compose = await composeCommand(ctx.env);
  const args = [
    ...common(ctx, options),
    'logs',
    ...(ctx.json ? ['--no-color'] : []),
    ...(options.follow ? ['-f'] : []),
    ...(options.tail !== undefined ? ['--tail', String(options.tail)] : []),
  ];
  if (options.service) args.push(options.service);
  const stdout = ctx.out.streams.stdout;
  await runCompose(compose, args, {
    env: ctx.env,
    cwd: ctx.cwd,
    stdout: ctx.json ? (line) => stdout.write(`${JSON.stringify(parseLogLine(line))}\n`) : 'inherit',
  });
}

export async function stackRestart(
  ctx: CommandContext,
  options: StackOptions & { service?: string },
): Promise<{ project: string; restarted: string }> {
  const compose = await composeCommand(ctx.env);
  await runCompose(compose, [...common(ctx, options), 'restart', ...(options.service ? [options.service] : [])], {
    env: ctx.env,
    cwd: ctx.cwd,
    stdout: composeOutput(ctx),
  });
  return { project: projectOf(options.env ?? 'dev'), restarted: options.service ?? 'all services' };
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
  const env = options.env ?? 'dev';
  const compose = await composeCommand(ctx.env);
  // YAML from every Compose version (v1 has no --format json), parsed here for --json.
  const yaml = await runCompose(compose, [...common(ctx, options), 'config'], {
    env: ctx.env,
    cwd: ctx.cwd,
    stdout: 'capture',
  });
  return { env, project: projectOf(env), yaml, config: redactComposeConfig(parseYaml(yaml)) };
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
