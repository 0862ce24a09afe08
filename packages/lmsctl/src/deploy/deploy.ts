import os from 'node:os';
import type Docker from 'dockerode';
import { errorMessage, maskUrl } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { composeCommand, resolveStack, type StackSelection } from '../lib/compose/compose-cli.js';
import { connectEngine } from '../lib/compose/docker-engine.js';
import { imageExists } from '../lib/compose/stack-images.js';
import { resolveSwarmStack, stackServices } from '../lib/swarm/swarm.js';
import { composeDriver, swarmDriver, type DeployDriver } from './drivers.js';
import { appendHistory, historyFile, readHistory, type DeployRecord } from './history.js';
import { RolloutFailed } from './rolling.js';
import { sampleTraffic, watchAfterRollout, type TrafficSample } from './watch.js';

export interface DeployOptions extends StackSelection {
  image: string;
  /** Take a backup (inside the stack, with the new image's lmsctl) before migrating. */
  backup?: boolean;
  /** Refuse unless a verified backup of the database is younger than this (ms). */
  requireBackupMs?: number;
  /** Run migrations marked -- migrate:contract too. */
  allowContract?: boolean;
  readyTimeoutMs?: number;
  /** Deploy to production an image staging never ran successfully. */
  skipStaging?: boolean;
  /** The staging stack's Compose project, whose deploy history proves the image (default lms-staging). */
  stagingProject?: string;
  /** The watch window after the rollout (0: none). */
  watchMs?: number;
  /** Prometheus for the watch window; default http://127.0.0.1:$PROMETHEUS_PORT (9090), skipped when it does not answer. */
  prometheusUrl?: string;
  maxErrorRise?: number;
  maxLatencyFactor?: number;
  /** compose or swarm; default: swarm when the engine runs the project as a Swarm stack. */
  orchestrator?: 'compose' | 'swarm';
}

/**
 * A rolling update of a running prod or staging stack to `image`: preflight → backup (optional) →
 * migrations (expand-only) → API replicas one at a time → worker and scheduler → the watch window.
 * On one host (Compose) lmsctl replaces the containers itself behind Caddy; on a Swarm the engine
 * rolls each service (drivers.ts). When a new container or task does not become ready or healthy,
 * or the watch window sees errors or latency rise, what was replaced goes back to the previous
 * image the same way and the deploy fails naming why. Every attempt is recorded in the history.
 */
export async function deployStack(
  ctx: CommandContext,
  options: DeployOptions,
  kind: DeployRecord['kind'] = 'deploy',
): Promise<DeployRecord> {
  const env = options.env ?? 'prod';
  if (env !== 'prod' && env !== 'staging') {
    throw new CliError(
      ExitCode.usage,
      `deploy updates a prod or staging stack, not ${env}`,
      env === 'dev' ? 'the dev stack runs the sources: lmsctl up' : 'use --env prod or --env staging',
    );
  }
  const target = resolveStack({ ...options, env, envFile: ctx.envFile }, ctx.env, ctx.cwd);
  const compose = await composeCommand(ctx.env, target);
  const docker = await connectEngine(ctx.env);
  if (!docker) throw new CliError(ExitCode.failed, 'no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)');
  const say = (message: string) => ctx.out.info(message);
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  const onSwarm =
    options.orchestrator === 'swarm' ||
    (options.orchestrator === undefined && (await stackServices(docker, target.project)).length > 0);
  const driver: DeployDriver = onSwarm
    ? await (async () => {
        const swarm = { target, compose, docker, cwd: ctx.cwd, env: ctx.env };
        return swarmDriver(swarm, await resolveSwarmStack(swarm), { readyTimeoutMs, say });
      })()
    : composeDriver({ compose, target, docker, cwd: ctx.cwd, say, readyTimeoutMs, stopTimeoutSeconds: 30 });
  const started = new Date();

  // Preflight: nothing changes until all of it passed.
  const previous = await driver.runningImage();
  await ensureImage(docker, options.image, say);
  const imageId = (await docker.getImage(options.image).inspect()).Id;
  if (env === 'prod' && kind === 'deploy' && !options.skipStaging) {
    await requireStagingRan(ctx, options.image, imageId, options.stagingProject ?? 'lms-staging');
  }
  const inStack = (args: string[]) => driver.lmsctl(options.image, args);
  say(`preflight: the migrations of ${options.image} against ${target.project}`);
  await inStack(['migrate', 'validate']);
  const pending = JSON.parse(
    await inStack(['migrate', 'up', '--dry-run', '--json', ...(options.allowContract ? [] : ['--expand-only'])]),
  ) as { pending: Array<{ id: string }> };

  const watchMs = kind === 'deploy' ? (options.watchMs ?? 120_000) : 0;
  const prometheus = watchMs > 0 ? await prometheusBaseline(ctx, options) : null;

  const record: DeployRecord = {
    id: `${kind}-${started.toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}`,
    kind,
    project: target.project,
    env,
    image: options.image,
    imageId,
    previousImage: previous,
    by: whoAmI(),
    startedAt: started.toISOString(),
    finishedAt: started.toISOString(),
    migrationsApplied: [],
    outcome: 'failed',
    reason: null,
  };
  const file = historyFile(target.project, ctx.env);
  const finish = async (outcome: DeployRecord['outcome'], reason: string | null) => {
    Object.assign(record, { outcome, reason, finishedAt: new Date().toISOString() });
    await appendHistory(file, record);
    // The database's table too, by the lmsctl of the image that runs now (older ones lack the command).
    const running = outcome === 'succeeded' ? options.image : previous;
    try {
      await driver.lmsctl(running, ['deploy', 'record'], JSON.stringify(record));
    } catch (error) {
      ctx.out.warn(`the deployments table was not updated (${errorMessage(error)}); ${file} has the record`);
    }
    return record;
  };

  try {
    if (options.backup) {
      say('backup: lmsctl backup inside the stack');
      await inStack(['backup']);
    }
    if (pending.pending.length) say(`migrations: ${pending.pending.map((migration) => migration.id).join(', ')}`);
    const migrated = JSON.parse(
      await inStack([
        'migrate',
        'up',
        '--json',
        ...(options.allowContract ? [] : ['--expand-only']),
        ...(options.requireBackupMs !== undefined
          ? ['--require-backup', `${Math.ceil(options.requireBackupMs / 1000)}s`]
          : []),
      ]),
    ) as { applied: Array<{ id: string }> };
    record.migrationsApplied = migrated.applied.map((migration) => migration.id);
  } catch (error) {
    await finish('failed', errorMessage(error));
    throw error;
  }

  try {
    await driver.rollout(options.image);
    if (watchMs > 0) {
      say(
        `watching ${formatDuration(watchMs)}: ${driver.orchestrator === 'swarm' ? 'task' : 'container'} health${prometheus ? `, and the 5xx share and p99 from ${prometheus.url}` : ''}`,
      );
      await watchAfterRollout(
        () => driver.checkHealth(),
        {
          watchMs,
          maxErrorRise: options.maxErrorRise ?? 0.02,
          maxLatencyFactor: options.maxLatencyFactor ?? 2,
        },
        prometheus,
      );
    }
  } catch (error) {
    if (!(error instanceof RolloutFailed)) {
      await driver.release().catch(() => undefined);
      await finish('failed', errorMessage(error));
      throw error;
    }
    ctx.out.warn(`${error.message} — rolling back to ${previous}`);
    try {
      await driver.rollBack(previous);
    } catch (rollbackError) {
      // The stack may now run both images: say so, record it, and name the command that finishes it.
      await driver.release().catch(() => undefined);
      await finish('failed', `${error.message}; rolling back failed too: ${errorMessage(rollbackError)}`);
      throw new CliError(
        ExitCode.failed,
        `deploy of ${options.image} failed (${error.message}) and rolling back to ${previous} failed too: ${errorMessage(rollbackError)}`,
        `the stack may run both images: lmsctl deploy rollback ${previous} finishes it, one ${driver.orchestrator === 'swarm' ? 'task' : 'container'} at a time`,
      );
    }
    await finish('rolled-back', error.message);
    const migrations = record.migrationsApplied.join(', ');
    throw new CliError(
      ExitCode.failed,
      `deploy of ${options.image} rolled back to ${previous}: ${error.message}`,
      !migrations
        ? undefined
        : options.allowContract
          ? `the migrations it applied (${migrations}) stay, contracting ones included (--allow-contract): check that ${previous} runs on them`
          : `the migrations it applied (${migrations}) stay: expand-only, so ${previous} runs on them`,
    );
  }
  say(`${target.project} runs ${options.image} (${formatDuration(Date.now() - started.getTime())})`);
  return finish('succeeded', null);
}

/**
 * The traffic before the deploy, which the watch window compares with. Prometheus named with
 * --prometheus-url must answer (preflight); the default address may not, and then the window
 * watches container health only, and says so.
 */
async function prometheusBaseline(
  ctx: CommandContext,
  options: DeployOptions,
): Promise<{ url: string; baseline: TrafficSample } | null> {
  const url = options.prometheusUrl ?? `http://127.0.0.1:${ctx.env.PROMETHEUS_PORT || 9090}`;
  try {
    return { url, baseline: await sampleTraffic(url, '5m') };
  } catch (error) {
    if (options.prometheusUrl) {
      throw new CliError(
        ExitCode.failed,
        `Prometheus at ${maskUrl(url)} does not answer: ${errorMessage(error)}`,
        'start the monitoring (lmsctl up --env observability), or deploy without --prometheus-url',
      );
    }
    ctx.out.warn(`no Prometheus answers at ${url}: the watch window checks container health only`);
    return null;
  }
}

/** Staging first: production takes only an image (by id, whatever its tag) staging ran successfully. */
async function requireStagingRan(
  ctx: CommandContext,
  image: string,
  imageId: string,
  stagingProject: string,
): Promise<void> {
  const staging = await readHistory(historyFile(stagingProject, ctx.env));
  if (staging.some((record) => record.imageId === imageId && record.outcome === 'succeeded')) return;
  throw new CliError(
    ExitCode.usage,
    `staging (${stagingProject}) never ran ${image} (${imageId.replace(/^sha256:/, '').slice(0, 12)}) successfully`,
    `deploy it there first: lmsctl deploy --env staging --image ${image}; or, knowingly, --skip-staging (--staging-project names another staging stack)`,
  );
}

async function ensureImage(docker: Docker, image: string, say: (message: string) => void): Promise<void> {
  if (await imageExists(docker, image)) return;
  say(`pulling ${image}`);
  try {
    await pull(docker, image);
  } catch (error) {
    throw new CliError(
      ExitCode.failed,
      `${image} is not on this host and cannot be pulled: ${errorMessage(error)}`,
      'build or load it first (docker load), or name an image that exists: docker images',
    );
  }
}

async function pull(docker: Docker, image: string): Promise<void> {
  const stream = await docker.pull(image);
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve())),
  );
}

function whoAmI(): string {
  try {
    return `${os.userInfo().username}@${os.hostname()}`;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}@${os.hostname()}`;
  }
}

/** The history of the addressed stack, newest last. */
export async function deployHistory(ctx: CommandContext, options: StackSelection): Promise<DeployRecord[]> {
  const target = resolveStack({ ...options, env: options.env ?? 'prod', envFile: ctx.envFile }, ctx.env, ctx.cwd);
  return readHistory(historyFile(target.project, ctx.env));
}
