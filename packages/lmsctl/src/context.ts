import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  type Config,
  type ConfigName,
  errorMessage,
  givenConfigNames,
  loadConfig,
  loadEnvFile,
} from '@lms/core/basics';
import { usageError } from './errors.js';
import { Output, type OutputStreams } from './output.js';

/** Options every command accepts (defined once on the program). */
export interface GlobalOptions {
  json?: boolean;
  yes?: boolean;
  envFile?: string;
  databaseUrl?: string;
  verbose?: boolean;
}

/** What a command body receives: validated config, output, and the global choices. */
export interface CommandContext {
  config: Config;
  /** The configuration variables the environment (or env file) set, rather than left to defaults. */
  configGiven: ReadonlySet<ConfigName>;
  out: Output;
  json: boolean;
  yes: boolean;
  verbose: boolean;
  /** `--database-url`, else DATABASE_URL; unset when neither is given. */
  databaseUrl: string | undefined;
  /**
   * For work that needs a whole session (migrate, backup, restore, drill, db maintain):
   * `--database-url`, else DATABASE_DIRECT_URL, else DATABASE_URL, and which of them it is.
   */
  sessionDatabase: { url: string; source: DatabaseUrlSource } | undefined;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Absolute path of the env file that was read, if any (scheduled jobs get it too). */
  envFile: string | undefined;
}

/** Where a database URL came from, for messages that say which setting to change. */
export type DatabaseUrlSource = '--database-url' | 'DATABASE_DIRECT_URL' | 'DATABASE_URL';

export interface CreateContextOptions extends GlobalOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  streams?: OutputStreams;
}

/**
 * Loads the env file into `env` (variables already set win, as with docker compose), then
 * validates the configuration. Without `--env-file`, a `.env` in the working directory is used
 * when present.
 */
export function createContext(options: CreateContextOptions = {}): CommandContext {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const given = options.envFile ?? (existsSync(path.join(cwd, '.env')) ? '.env' : undefined);
  const envFile = given === undefined ? undefined : path.resolve(cwd, given);
  if (envFile) loadEnvFileInto(envFile, env, options.envFile !== undefined);
  const config = loadConfig(env);
  const configGiven = givenConfigNames(env);
  const out = new Output({
    json: options.json ?? false,
    verbose: options.verbose ?? false,
    env,
    streams: options.streams,
  });
  return {
    config,
    out,
    json: options.json ?? false,
    yes: options.yes ?? false,
    verbose: options.verbose ?? false,
    databaseUrl: options.databaseUrl ?? config.DATABASE_URL,
    sessionDatabase: sessionDatabaseOf(options.databaseUrl, config),
    cwd,
    env,
    envFile,
    configGiven,
  };
}

function sessionDatabaseOf(given: string | undefined, config: Config): CommandContext['sessionDatabase'] {
  if (given) return { url: given, source: '--database-url' };
  if (config.DATABASE_DIRECT_URL) return { url: config.DATABASE_DIRECT_URL, source: 'DATABASE_DIRECT_URL' };
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, source: 'DATABASE_URL' };
  return undefined;
}

function loadEnvFileInto(file: string, env: NodeJS.ProcessEnv, given: boolean): void {
  try {
    loadEnvFile(file, env);
  } catch (error) {
    throw usageError(
      errorMessage(error),
      given
        ? 'check the path given to --env-file (without the option, lmsctl reads ./.env when there is one)'
        : 'make ./.env readable, or name another file with --env-file',
    );
  }
}

/** What a check item says when the command was given no database. */
export const NO_DATABASE_GIVEN = 'no database given (--database-url or DATABASE_URL)';

/**
 * The database URL for work that needs a whole session (see `sessionDatabase`), or a usage error
 * saying how to give one. `requireDirectDatabaseUrl` also refuses one through a pooler.
 */
export function requireSessionDatabaseUrl(ctx: CommandContext): string {
  return requireSessionDatabase(ctx).url;
}

/**
 * `requireSessionDatabaseUrl`, refused (exit 2, saying which setting to change) when it reaches
 * PostgreSQL through a connection pooler: `doing` ("migrate", "back up"…) needs a session of its own.
 */
export async function requireDirectDatabaseUrl(ctx: CommandContext, doing: string): Promise<string> {
  const { url, source } = requireSessionDatabase(ctx);
  // Loaded here: the pooler check needs the database driver, which most commands never load.
  const { refuseThroughPooler } = await import('./postgres/direct-connection.js');
  await refuseThroughPooler(url, source, doing);
  return url;
}

/** `sessionDatabase`, or a usage error saying how to give one. */
export function requireSessionDatabase(ctx: CommandContext): NonNullable<CommandContext['sessionDatabase']> {
  if (!ctx.sessionDatabase) {
    throw usageError(
      'no database given',
      'pass --database-url postgres://… or set DATABASE_DIRECT_URL or DATABASE_URL (see .env.example)',
    );
  }
  return ctx.sessionDatabase;
}

/** The database URL the command needs, or a usage error saying how to give one. */
export function requireDatabaseUrl(ctx: CommandContext): string {
  if (!ctx.databaseUrl) {
    throw usageError('no database given', 'pass --database-url postgres://… or set DATABASE_URL (see .env.example)');
  }
  return ctx.databaseUrl;
}
