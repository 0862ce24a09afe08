import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { maskSecretsInText } from '@lms/core/basics';
import { CliError, ExitCode } from '../errors.js';

/**
 * The PostgreSQL client programs lmsctl drives. Nothing of their work is re-implemented: lmsctl
 * prepares, checks and verifies around them. Connection details reach them through libpq
 * environment variables, never the command line, where other users of the machine could read
 * a password.
 */
export type PgTool = 'pg_dump' | 'pg_restore' | 'psql';

export interface PgToolsOptions {
  /** LMS_PG_BIN_DIR: folder with the tools; default: PATH. */
  binDir?: string;
  env: NodeJS.ProcessEnv;
  /** Where to say what only --verbose shows (e.g. that tools cannot be tied to lmsctl's life). */
  debug?: (message: string) => void;
}

/** Where Debian's postgresql-common installs each major version's programs (its `binroot`). */
const DEBIAN_BIN_ROOT = '/usr/lib/postgresql';

/** Tools found behind Debian's pg_wrapper, by tool and PATH (resolved once per process). */
const unwrapped = new Map<string, string | null>();

/**
 * The program `tool` runs as. With LMS_PG_BIN_DIR, the tool in it. Otherwise the one on PATH —
 * except Debian's and Ubuntu's `pg_wrapper` (what /usr/bin/pg_dump is there), a Perl script
 * that takes some 0.05–0.1 s to choose the real program on every call, three or more times per
 * backup. For a connection given by host (PGHOST, which lmsctl sets from the URL) it runs the
 * newest installed version's program, which reads every older server too; lmsctl runs that
 * program itself. The bare name stays when nothing is found, so starting it fails with ENOENT
 * and the install hint.
 */
export function pgToolPath(tool: PgTool, binDir?: string, env: NodeJS.ProcessEnv = process.env): string {
  const executable = process.platform === 'win32' ? `${tool}.exe` : tool;
  if (binDir) return path.join(binDir, executable);
  const cacheKey = `${tool}\0${env.PATH ?? ''}`;
  let program = unwrapped.get(cacheKey);
  if (program === undefined) {
    program = unwrapDebianTool(tool, findExecutable(executable, env));
    unwrapped.set(cacheKey, program);
  }
  return program ?? executable;
}

function unwrapDebianTool(tool: PgTool, onPath: string | null): string | null {
  if (!onPath || process.platform !== 'linux') return onPath;
  let target: string;
  try {
    target = realpathSync(onPath);
  } catch {
    return onPath;
  }
  if (path.basename(target) !== 'pg_wrapper') return onPath;
  let versions: string[];
  try {
    versions = readdirSync(DEBIAN_BIN_ROOT);
  } catch {
    return onPath;
  }
  const newestFirst = versions
    .filter((name) => /^\d+(?:\.\d+)?$/.test(name))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => path.join(DEBIAN_BIN_ROOT, version, 'bin', tool));
  return newestFirst.find((candidate) => findExecutable(candidate, {}) !== null) ?? onPath;
}

/** What to install for PostgreSQL client tools of a major version, per platform. */
export function installHint(major?: number): string {
  const v = major ? `-${major}` : '';
  const at = major ? `@${major}` : '';
  return (
    `install the PostgreSQL${major ? ` ${major}` : ''} client tools (Debian/Ubuntu: apt install postgresql-client${v}; ` +
    `macOS: brew install libpq or postgresql${at}; Windows: the PostgreSQL installer's Command Line Tools) ` +
    `or set LMS_PG_BIN_DIR to the folder that holds them`
  );
}

const runFile = promisify(execFile);

export interface ToolVersion {
  version: string;
  major: number;
}

/** Runs `<tool> --version`; a missing tool becomes one line saying what to install. */
export async function pgToolVersion(tool: PgTool, options: PgToolsOptions): Promise<ToolVersion> {
  const file = pgToolPath(tool, options.binDir, options.env);
  try {
    const stdout = (await runFile(file, ['--version'], { env: options.env })).stdout.trim();
    const match = /(\d+)(?:\.(\d+))?/.exec(stdout);
    if (!match) throw new CliError(ExitCode.failed, `cannot read the version of ${file} ("${stdout}")`);
    return { version: match[2] === undefined ? match[1]! : `${match[1]}.${match[2]}`, major: Number(match[1]) };
  } catch (error) {
    if (error instanceof CliError) throw error;
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT' || code === 'EACCES') {
      throw new CliError(
        ExitCode.failed,
        `${tool} not found${options.binDir ? ` in ${options.binDir}` : ' on PATH'}: ${installHint()}`,
      );
    }
    throw error;
  }
}

/** Refuses a pg_dump older than the server: it would refuse anyway, with a less helpful message. */
export function assertDumpCanReadServer(pgDump: ToolVersion, serverMajor: number, serverVersion: string): void {
  if (pgDump.major < serverMajor) {
    throw new CliError(
      ExitCode.failed,
      `pg_dump ${pgDump.version} cannot dump PostgreSQL ${serverVersion}: ${installHint(serverMajor)}`,
    );
  }
}

/** libpq parameters that may appear as URL query parameters, and their environment variable. */
const QUERY_TO_ENV: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  sslmode: 'PGSSLMODE',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT',
  sslcrl: 'PGSSLCRL',
  sslpassword: 'PGSSLPASSWORD',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
  gssencmode: 'PGGSSENCMODE',
  channel_binding: 'PGCHANNELBINDING',
};

/**
 * The environment for a client tool connecting to `url` (optionally another database on the
 * same server): every libpq variable of the caller's environment is dropped, so a stray
 * PGDATABASE or PGHOST cannot redirect a restore, and the URL's parts are set instead.
 */
export function libpqEnv(url: string, base: NodeJS.ProcessEnv, database?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(base)) {
    // Keep where to find passwords and certificates; everything else comes from the URL.
    if (!key.startsWith('PG') || key === 'PGPASSFILE' || key === 'PGSERVICEFILE' || key === 'PGSYSCONFDIR') {
      env[key] = value;
    }
  }
  const parsed = new URL(url);
  if (parsed.hostname) env.PGHOST = decodeURIComponent(parsed.hostname).replace(/^\[|\]$/g, '');
  if (parsed.port) env.PGPORT = parsed.port;
  if (parsed.username) env.PGUSER = decodeURIComponent(parsed.username);
  if (parsed.password) env.PGPASSWORD = decodeURIComponent(parsed.password);
  for (const [name, value] of parsed.searchParams) {
    const variable = QUERY_TO_ENV[name];
    if (variable) env[variable] = value;
  }
  env.PGDATABASE = database ?? decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  env.PGAPPNAME = 'lmsctl';
  return env;
}

/** A client tool exited with an error; the message carries its last stderr lines, masked. */
export class PgToolError extends CliError {
  constructor(tool: PgTool, detail: string, exitCode: number = ExitCode.failed) {
    super(exitCode as 1 | 3, `${tool} failed: ${maskSecretsInText(detail)}`);
  }
}

/** The meaningful end of a tool's stderr (the last error lines), for one-line messages. */
export function lastErrorLines(stderr: string, max = 3): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const errors = lines.filter((line) => /error|fatal|could not|unsupported|invalid/i.test(line));
  return (errors.length ? errors : lines).slice(-max).join(' | ') || 'no error output';
}

export interface RunToolOptions extends PgToolsOptions {
  /** Server to connect to; omitted for tools that only read a file (pg_restore --list). */
  url?: string;
  database?: string;
  cancelSignal?: AbortSignal;
  stdin?: 'ignore' | 'pipe';
  stdout?: 'ignore' | 'pipe';
}

/**
 * The signal the kernel sends a client tool when lmsctl dies. TERM rather than KILL: pg_dump and
 * pg_restore answer it by cancelling their queries on the server and passing it on to their
 * parallel workers (pg_restore --jobs), which a parent-death signal does not reach (it is not
 * inherited over fork) and which KILL would leave running.
 */
const DEATH_SIGNAL = 'TERM';

/** setpriv programs already asked whether they support --pdeathsig (asked once per process). */
const launcherSupport = new Map<string, boolean>();
let launcherMissingReported = false;

/** The executable `name` runs as with this PATH (a name with a folder is taken as is), or null. */
function findExecutable(name: string, env: NodeJS.ProcessEnv): string | null {
  const candidates = name.includes(path.sep)
    ? [path.resolve(name)]
    : (env.PATH ?? '')
        .split(path.delimiter)
        .filter(Boolean)
        .map((dir) => path.resolve(dir, name));
  for (const candidate of candidates) {
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      continue;
    }
  }
  return null;
}

/** util-linux setpriv when it is on PATH and knows --pdeathsig (util-linux 2.33 and later; not busybox). */
function deathSignalLauncher(env: NodeJS.ProcessEnv): string | null {
  const setpriv = findExecutable('setpriv', env);
  if (!setpriv) return null;
  let supported = launcherSupport.get(setpriv);
  if (supported === undefined) {
    const probe = spawnSync(setpriv, ['--pdeathsig', DEATH_SIGNAL, setpriv, '--version'], {
      stdio: 'ignore',
      timeout: 5000,
    });
    supported = probe.status === 0;
    launcherSupport.set(setpriv, supported);
  }
  return supported ? setpriv : null;
}

/**
 * On Linux, a tool is started through `setpriv --pdeathsig TERM`, so the kernel stops it when
 * lmsctl dies, even by SIGKILL: otherwise pg_dump or pg_restore would keep loading the server
 * for nothing. setpriv execs the tool, so the pid lmsctl signals on cancellation is the tool's.
 * The signal fires when the thread that forked exits; Node spawns from its main thread, which
 * lives as long as lmsctl. Elsewhere, or without a suitable setpriv, the tool is started as is.
 */
function commandFor(tool: PgTool, args: string[], options: RunToolOptions): [string, string[]] {
  const file = pgToolPath(tool, options.binDir, options.env);
  if (process.platform !== 'linux') return [file, args];
  const launcher = deathSignalLauncher(options.env);
  if (!launcher) {
    if (options.debug && !launcherMissingReported) {
      launcherMissingReported = true;
      options.debug(
        `no setpriv with --pdeathsig (util-linux 2.33 or later) on PATH: ${tool} and the other client tools outlive a killed lmsctl`,
      );
    }
    return [file, args];
  }
  // A missing tool is started directly, so it fails with ENOENT and the usual install hint.
  const program = findExecutable(file, options.env);
  return program ? [launcher, ['--pdeathsig', DEATH_SIGNAL, program, ...args]] : [file, args];
}

/**
 * A running client tool: its process (pid, stdin, stdout, kill) that is also a promise, settled
 * once it exits and its stderr is read — fulfilled on exit code 0, else rejected with a
 * ToolProcessError.
 */
export type ToolProcess = ChildProcess & Promise<void>;

/** How a client tool ended when it did not succeed. */
export class ToolProcessError extends Error {
  constructor(
    message: string,
    /** Its exit code; undefined when it never ran (spawn error) or was killed by a signal. */
    readonly exitCode: number | undefined,
    /** The signal that killed it, if one did. */
    readonly signal: NodeJS.Signals | undefined,
    /** Its whole stderr. */
    readonly stderr: string,
    /** Stopped because cancelSignal aborted. */
    readonly isCanceled: boolean,
    /** A spawn error's code (ENOENT, EACCES), if it never started. */
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ToolProcessError';
  }
}

/** Started tools still running, stopped if lmsctl exits without awaiting them (as execa's cleanup did). */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** How long a cancelled tool has to stop after TERM before it is killed. */
const FORCE_KILL_AFTER_MS = 5000;

/**
 * Starts a client tool against `url`; the caller awaits (or streams) the returned process.
 * node:child_process rather than execa here: execa and its dependencies are some 130 modules,
 * about 0.1 s of every backup, verify, restore and drill's start-up (docs/benchmarks.md).
 */
export function startPgTool(tool: PgTool, args: string[], options: RunToolOptions): ToolProcess {
  const [command, commandArgs] = commandFor(tool, args, options);
  const child = spawn(command, commandArgs, {
    env: options.url ? libpqEnv(options.url, options.env, options.database) : options.env,
    stdio: [options.stdin ?? 'ignore', options.stdout ?? 'ignore', 'pipe'],
    windowsHide: true,
  });
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const started of running) started.kill();
    });
  }
  running.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (stderr += chunk));
  let canceled = false;
  let forceKill: NodeJS.Timeout | undefined;
  const cancel = () => {
    canceled = true;
    child.kill('SIGTERM');
    forceKill = setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS);
    forceKill.unref();
  };
  if (options.cancelSignal?.aborted) cancel();
  else options.cancelSignal?.addEventListener('abort', cancel, { once: true });
  const done = new Promise<void>((resolve, reject) => {
    const settle = (error: ToolProcessError | null) => {
      running.delete(child);
      clearTimeout(forceKill);
      options.cancelSignal?.removeEventListener('abort', cancel);
      if (error) reject(error);
      else resolve();
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      // Only a tool that never started (no pid: ENOENT, EACCES) ends here; an error of a started
      // one (a failed kill) is no outcome, its close is.
      if (child.pid === undefined)
        settle(
          new ToolProcessError(`${command}: ${error.message}`, undefined, undefined, stderr, canceled, error.code),
        );
    });
    child.once('close', (exitCode, signal) => {
      if (child.pid === undefined) return;
      const stderrText = stderr.replace(/\n$/, '');
      if (exitCode === 0 && !canceled) return settle(null);
      const how = signal ? `killed by ${signal}` : `exit code ${exitCode}`;
      settle(
        new ToolProcessError(
          `${canceled ? 'cancelled' : 'failed'}: ${command} (${how})`,
          exitCode ?? undefined,
          signal ?? undefined,
          stderrText,
          canceled,
        ),
      );
    });
  });
  return Object.assign(child, {
    then: done.then.bind(done),
    catch: done.catch.bind(done),
    finally: done.finally.bind(done),
  }) as unknown as ToolProcess;
}

/** Turns a failure of a client tool into a PgToolError (or rethrows an interruption). */
export function toolFailure(tool: PgTool, error: unknown): Error {
  if (error instanceof ToolProcessError) {
    if (error.isCanceled) return error;
    if (error.code === 'ENOENT') return new CliError(ExitCode.failed, `${tool} not found: ${installHint()}`);
    const how = error.signal ? `killed by ${error.signal}` : `exit code ${error.exitCode}`;
    return new PgToolError(tool, `${lastErrorLines(error.stderr)} (${how})`);
  }
  return error as Error;
}

/** What `pg_restore --list` says about an archive. */
export interface ArchiveListing {
  /** pg_dump version that wrote it, e.g. "15.20". */
  dumpedBy: string | null;
  /** Server version it was dumped from. */
  dumpedFrom: string | null;
  /** The database it was dumped from, as its header names it. */
  database: string | null;
  /** When pg_dump wrote it, from its header (UTC). */
  createdAt: Date | null;
  /** Its header's compression, e.g. "-1" (pg_dump's default gzip level) or "1". */
  compression: string | null;
  entries: number;
  /** Count of TOC entries per object type (TABLE, TABLE DATA, INDEX, …). */
  byType: Record<string, number>;
}

/** Parses `pg_restore --list` output. */
export function parseArchiveListing(listing: string): ArchiveListing {
  const dumpedBy = /^;\s+Dumped by pg_dump version: (\S+)/m.exec(listing)?.[1] ?? null;
  const dumpedFrom = /^;\s+Dumped from database version: (\S+)/m.exec(listing)?.[1] ?? null;
  const database = /^;\s+dbname: (.+)$/m.exec(listing)?.[1]?.trim() ?? null;
  const created = /^; Archive created at (\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) UTC$/m.exec(listing);
  const createdAt = created ? new Date(`${created[1]}T${created[2]}Z`) : null;
  const compression = /^;\s+Compression: (.+)$/m.exec(listing)?.[1]?.trim() ?? null;
  const byType: Record<string, number> = {};
  let entries = 0;
  for (const line of listing.split('\n')) {
    // "3385; 0 16390 TABLE DATA public users root" — id; catalog oid; object oid; type…
    const match = /^\d+;\s+\d+\s+\d+\s+(.+)$/.exec(line.trim());
    if (!match) continue;
    entries++;
    const rest = match[1]!;
    const type =
      [
        'TABLE DATA',
        'SEQUENCE SET',
        'SEQUENCE OWNED BY',
        'FK CONSTRAINT',
        'MATERIALIZED VIEW DATA',
        'DEFAULT ACL',
      ].find((candidate) => rest.startsWith(`${candidate} `)) ?? rest.split(' ')[0]!;
    byType[type] = (byType[type] ?? 0) + 1;
  }
  return { dumpedBy, dumpedFrom, database, createdAt, compression, entries, byType };
}
