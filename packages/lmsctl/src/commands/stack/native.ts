import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import { connectClient, defaultMigrationsDir, maskUrl, Migrator } from '@lms/core';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode, usageError } from '../../errors.js';
import { startFromSource, untilAnswers, type AppProcess } from '../../lib/dev-stack/app-processes.js';
import { demoAccountLines, loadDemoData, type SeedResult } from '../../lib/dev-stack/demo-data.js';
import { devSecret } from '../../lib/dev-stack/dev-secrets.js';
import { startMailCatcher } from '../../lib/dev-stack/mail-catcher.js';
import { holdPort, type HeldPort } from '../../lib/dev-stack/port-probes.js';
import { ensurePostgres } from '../../lib/dev-stack/postgres-server.js';
import { ensureRedis } from '../../lib/dev-stack/redis-server.js';

export interface NativeOptions {
  /** The stack `up --env` asked for: natively only the dev stack runs. */
  env?: 'dev' | 'staging' | 'prod' | 'observability';
  /** Address the API and the worker listen on (default 127.0.0.1: the demo passwords stay on this machine). */
  host?: string;
  /** Folder for the embedded PostgreSQL, the local Redis and dev secrets (default .lms). */
  dataDir?: string;
  /** Stops the stack (tests); in a terminal Ctrl-C does. */
  stop?: AbortSignal;
}

export interface NativeResult {
  apiUrl: string;
  workerUrl: string;
  databaseUrl: string;
  redisUrl: string;
  started: string[];
  seeded: boolean;
}

/** Something the dev stack started and stops again, last started first. */
interface Cleanup {
  name: string;
  run(): Promise<void>;
}

/**
 * The dev stack as local processes, for machines without Docker: PostgreSQL (DATABASE_URL when
 * it answers, else an embedded one under .lms/), Redis (REDIS_URL when it answers, else a local
 * redis-server), migrations, demo data, then the API and the worker with prefixed logs. Runs
 * until Ctrl-C (or `stop`), then stops everything it started.
 */
export async function nativeUp(ctx: CommandContext, options: NativeOptions = {}): Promise<NativeResult> {
  if (ctx.config.NODE_ENV === 'production') {
    throw new CliError(
      ExitCode.usage,
      'lmsctl up --native runs the development stack; with NODE_ENV=production use the Compose files (--env prod)',
    );
  }
  if (options.env && options.env !== 'dev') {
    // Natively it would be a dev stack on the default database and Redis, whatever --env says.
    throw usageError(
      `--native runs only the dev stack: drop --env ${options.env}, or drop --native to start ${options.env} with Docker Compose`,
    );
  }
  const host = options.host ?? '127.0.0.1';
  if (!net.isIP(host)) throw usageError(`--host ${host} is not an IP address: use e.g. 127.0.0.1, ::1 or 0.0.0.0`);
  const dataDir = path.resolve(ctx.cwd, options.dataDir ?? '.lms');
  const apiPort = ctx.config.PORT;
  const workerPort = ctx.config.WORKER_METRICS_PORT;
  // Before anything starts, and kept until the API and the worker start: a busy port would
  // otherwise show only after PostgreSQL and Redis were up, or another process would answer
  // the health checks in their place.
  const held: HeldPort[] = [await holdPort(apiPort, host, 'PORT')];
  try {
    held.push(await holdPort(workerPort, host, 'WORKER_METRICS_PORT'));
  } catch (error) {
    await held[0]!.release();
    throw error;
  }
  const cleanups: Cleanup[] = [];
  const processes: AppProcess[] = [];
  const say = (message: string) => ctx.out.info(message);
  const stop = new AbortController();
  options.stop?.addEventListener('abort', () => stop.abort(), { once: true });
  const onSignal = () => stop.abort();
  // Persistent listeners, removed in `finally`: execa's exit hook kills the process on a signal
  // when it finds no other listener, and a `once` listener is gone by the time it looks.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed terminal too: the API and the worker run detached and would outlive lmsctl.
  process.on('SIGHUP', onSignal);

  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const database = await ensurePostgres({
      configuredUrl: ctx.databaseUrl,
      dataDir,
      cwd: ctx.cwd,
      env: ctx.env,
      say,
    });
    if (database.stop) cleanups.push({ name: 'embedded PostgreSQL', run: database.stop });
    const redis = await ensureRedis(ctx.config.REDIS_URL, dataDir, say);
    if (redis.stop) cleanups.push({ name: 'redis-server', run: redis.stop });
    await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
    say('migrations applied');
    const seeded = await seedDemoData(database.url);
    if (seeded.seeded) {
      await writeFile(
        path.join(dataDir, 'demo-credentials.txt'),
        `admin@lms.local ${seeded.admin!.password}\nother demo accounts ${seeded.demoPassword}\n`,
        { mode: 0o600 },
      );
    }
    const stopMailCatcher = await startMailCatcher(ctx.config.SMTP_URL, ctx.out, say);
    if (stopMailCatcher) cleanups.push({ name: 'mail catcher', run: stopMailCatcher });

    const childEnv: NodeJS.ProcessEnv = {
      // Webhooks to a receiver on this machine are what development needs; the environment may say otherwise.
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      ...ctx.env,
      NODE_ENV: 'development',
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      SECRET_KEY: ctx.config.SECRET_KEY ?? (await devSecret(dataDir, 'secret-key')),
      HOST: host,
      PORT: String(apiPort),
      WORKER_METRICS_PORT: String(workerPort),
    };
    for (const port of held) await port.release();
    processes.push(startFromSource('api', 'packages/api/src/main.ts', [], childEnv, ctx.out));
    processes.push(startFromSource('worker', 'packages/worker/src/main.ts', ['--scheduler'], childEnv, ctx.out));
    const apiUrl = httpUrl(host, apiPort);
    const workerUrl = httpUrl(host, workerPort);
    await untilAnswers(`${apiUrl}/ready`, stop.signal, processes);
    await untilAnswers(`${workerUrl}/health`, stop.signal, processes);

    const result: NativeResult = {
      apiUrl,
      workerUrl,
      databaseUrl: maskUrl(database.url),
      redisUrl: maskUrl(redis.url),
      started: [...cleanups.map((cleanup) => cleanup.name), ...processes.map((entry) => entry.name)],
      seeded: seeded.seeded,
    };
    ctx.out.result(result, (data, style) => renderNative(data, style, seeded));
    const exited = await new Promise<string | null>((resolve) => {
      if (stop.signal.aborted) return resolve(null);
      stop.signal.addEventListener('abort', () => resolve(null), { once: true });
      for (const { name, child } of processes) {
        child.then(
          () => resolve(name),
          () => resolve(name),
        );
      }
    });
    // A process that died on its own is a failure of the stack, not a requested stop.
    if (exited && !stop.signal.aborted) {
      throw new CliError(ExitCode.failed, `the ${exited} exited on its own; the stack was stopped`);
    }
    return result;
  } finally {
    for (const port of held) await port.release();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    say('stopping');
    for (const { child } of processes) child.kill('SIGTERM');
    await Promise.all(processes.map(({ child }) => child.catch(() => undefined)));
    for (const cleanup of cleanups.reverse())
      await cleanup.run().catch((error: unknown) => ctx.out.warn(`${cleanup.name}: ${(error as Error).message}`));
    say('stopped');
  }
}

/** Where this machine reaches a server listening on `host` (every interface: over loopback). */
function httpUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${net.isIPv6(reachable) ? `[${reachable}]` : reachable}:${port}`;
}

/** The demo data, once, into the dev database (the production refusal is nativeUp's own). */
async function seedDemoData(databaseUrl: string): Promise<SeedResult> {
  const client = await connectClient(databaseUrl, { applicationName: 'lmsctl up' });
  try {
    return await loadDemoData(client);
  } finally {
    await client.end();
  }
}

export function renderNative(result: NativeResult, style: ChalkInstance, seeded?: SeedResult): string {
  const lines = [
    style.green('the LMS is running'),
    `  API        ${result.apiUrl}   (OpenAPI: ${result.apiUrl}/api/v1/openapi.json, metrics: ${result.apiUrl}/metrics)`,
    `  worker     ${result.workerUrl}/health`,
    `  PostgreSQL ${result.databaseUrl}`,
    `  Redis      ${result.redisUrl}`,
  ];
  if (seeded?.seeded) lines.push(...demoAccountLines(seeded), '  (also in .lms/demo-credentials.txt)');
  else lines.push('  accounts: as before (see .lms/demo-credentials.txt)');
  lines.push(style.dim('Ctrl-C stops everything'));
  return lines.join('\n');
}
