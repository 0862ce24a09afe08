import pg from 'pg';
import type { Config } from './config.js';
import { DatabaseConnectionError } from './errors.js';
import { describePostgresUrl, maskUrl } from './mask.js';

export type { Pool, PoolClient, QueryResultRow } from 'pg';

/** How long a client may sit idle in the pool before it is pinged on checkout. */
const DEFAULT_PRE_PING_AFTER_MS = 10_000;
/** Replacement attempts when pinged clients turn out to be dead (e.g. after a server restart). */
const MAX_DEAD_CLIENTS_SKIPPED = 3;

type PoolConfig = Pick<
  Config,
  | 'DB_POOL_SIZE'
  | 'DB_MAX_OVERFLOW'
  | 'DB_IDLE_TIMEOUT_SECONDS'
  | 'DB_POOL_TIMEOUT_SECONDS'
  | 'DB_POOL_RECYCLE_SECONDS'
  | 'DB_STATEMENT_TIMEOUT_SECONDS'
  | 'DB_QUERY_TIMEOUT_SECONDS'
>;

export interface CreatePoolOptions {
  connectionString: string;
  config: PoolConfig;
  /** `application_name` the server shows in pg_stat_activity (restore lists it when it refuses). */
  applicationName: string;
  /** Clients idle longer than this are checked with a round trip before being handed out. */
  prePingAfterMs?: number;
  /** Called with errors of idle clients (server restart, network drop); they are removed from the pool. */
  onIdleClientError?: (error: Error) => void;
}

/**
 * A pg pool that checks stale idle connections before handing them out (SQLAlchemy's
 * `pool_pre_ping`): a connection the server or a proxy has silently dropped is discarded and
 * replaced instead of failing the request that drew it.
 */
class PrePingPool extends pg.Pool {
  private readonly releasedAt = new WeakMap<pg.PoolClient, number>();
  private readonly prePingAfterMs: number;

  constructor(config: pg.PoolConfig, prePingAfterMs: number) {
    super(config);
    this.prePingAfterMs = prePingAfterMs;
    this.on('release', (_err: Error | undefined, client: pg.PoolClient) => this.releasedAt.set(client, Date.now()));
    // pg-pool listens for errors only on idle clients; a checked-out client whose connection
    // drops would otherwise emit an unhandled 'error' and kill the process. The failure still
    // reaches the code holding the client through its next query.
    this.on('connect', (client: pg.PoolClient) => client.on('error', () => undefined));
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(
    callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void,
  ): void;
  override connect(
    callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void,
  ): Promise<pg.PoolClient> | void {
    const acquired = this.acquireLiveClient();
    if (!callback) return acquired;
    acquired.then(
      (client) => callback(undefined, client, (release) => client.release(release as Error | boolean | undefined)),
      (error: Error) => callback(error, undefined, () => undefined),
    );
  }

  private async acquireLiveClient(): Promise<pg.PoolClient> {
    for (let skipped = 0; ; skipped++) {
      const client = await super.connect();
      const idleSince = this.releasedAt.get(client);
      if (idleSince === undefined || Date.now() - idleSince < this.prePingAfterMs) return client;
      try {
        await client.query('SELECT 1');
        return client;
      } catch (error) {
        // Passing the error removes the dead client from the pool instead of returning it.
        client.release(error as Error);
        // A ping that got no answer at all means the server is not answering (frozen, or the
        // network drops packets): the next idle connection would wait just as long.
        if (skipped >= MAX_DEAD_CLIENTS_SKIPPED || isQueryTimeout(error)) throw error;
      }
    }
  }
}

/**
 * Creates the process's PostgreSQL pool: up to `DB_POOL_SIZE + DB_MAX_OVERFLOW` connections,
 * of which `DB_POOL_SIZE` stay open when idle and the overflow closes after the idle timeout.
 */
export function createPool(options: CreatePoolOptions): pg.Pool {
  const { config } = options;
  const pool = new PrePingPool(
    {
      connectionString: options.connectionString,
      application_name: options.applicationName,
      max: config.DB_POOL_SIZE + config.DB_MAX_OVERFLOW,
      min: config.DB_POOL_SIZE,
      idleTimeoutMillis: config.DB_IDLE_TIMEOUT_SECONDS * 1000,
      connectionTimeoutMillis: config.DB_POOL_TIMEOUT_SECONDS * 1000,
      maxLifetimeSeconds: config.DB_POOL_RECYCLE_SECONDS,
      keepAlive: true,
      // The server cancels a longer statement (57014) and the connection stays usable.
      ...(config.DB_STATEMENT_TIMEOUT_SECONDS ? { statement_timeout: config.DB_STATEMENT_TIMEOUT_SECONDS * 1000 } : {}),
      // A server that answers nothing at all (frozen, or a network that drops packets) never
      // cancels anything: the client stops waiting, and a connection left with an unanswered
      // query is closed rather than reused.
      ...(config.DB_QUERY_TIMEOUT_SECONDS ? { query_timeout: config.DB_QUERY_TIMEOUT_SECONDS * 1000 } : {}),
    },
    options.prePingAfterMs ?? DEFAULT_PRE_PING_AFTER_MS,
  );
  // Without a listener an idle client's error (server restart) would crash the process.
  pool.on('error', (error) => options.onIdleClientError?.(error));
  return pool;
}

/** Milliseconds lmsctl waits for a connection before giving up (the API's readiness probe waits 1 s). */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Opens a single connection with a bounded wait, turning every way it can fail into one
 * readable `DatabaseConnectionError` that names the server but never the password.
 */
export async function connectClient(
  connectionString: string,
  options: { applicationName: string; timeoutMs?: number } = { applicationName: 'lmsctl' },
): Promise<pg.Client> {
  assertPostgresUrl(connectionString);
  const client = new pg.Client({
    connectionString,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.timeoutMs ?? CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  // Errors after connect (server shutdown) surface through the next query; this keeps an
  // unhandled 'error' event from killing the process in between.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw describeConnectionError(error, connectionString, options.timeoutMs ?? CONNECT_TIMEOUT_MS);
  }
}

/**
 * A readiness probe on a connection of its own: connect, `SELECT 1`, close, all within
 * `timeoutMs`. It never takes a pool connection, so probes cannot use up the pool while the
 * server hangs, and nothing is left waiting once it gives up. Rejects with the driver's error.
 */
export async function pingDatabase(
  connectionString: string,
  options: { applicationName: string; timeoutMs: number },
): Promise<void> {
  const client = new pg.Client({
    connectionString,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.timeoutMs,
    query_timeout: options.timeoutMs,
  });
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
  });
  try {
    await Promise.race([client.connect().then(() => client.query('SELECT 1')), expired]);
  } finally {
    clearTimeout(timer);
    // Not awaited: a frozen server would never acknowledge the goodbye. pg destroys the socket
    // of a client whose query is still unanswered, so nothing lingers on our side.
    client.end().catch(() => undefined);
  }
}

/** pg gave up waiting for the answer to a query (`query_timeout`). */
export function isQueryTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout';
}

/**
 * SQLSTATEs that say the server cannot serve right now, not that the statement was wrong:
 * statement_timeout (57014), shutdown and crash (57P01, 57P02), starting up or in recovery
 * (57P03), too many connections (53300); class 08 (connection exceptions) is matched by prefix.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57014', '57P01', '57P02', '57P03', '53300']);

/** Socket errors of a connection that could not be made or was lost. */
const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
]);

/**
 * What pg and pg-pool throw, as plain Errors without a code, when a connection or an answer does
 * not come: waiting for a pool connection, a new connection or a query answer timed out, or the
 * connection dropped.
 */
const UNAVAILABLE_MESSAGES = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  'Connection terminated unexpectedly',
  'Connection terminated',
  'timeout expired',
  'Query read timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
]);

/**
 * Whether an error means PostgreSQL is unreachable, overloaded or too slow right now (the
 * request may succeed if retried later) rather than that the request or the code is wrong. The
 * API answers these with 503 and Retry-After instead of 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as PgLikeError).code;
    if (code !== undefined) {
      if (UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08') || CONNECTION_ERROR_CODES.has(code)) return true;
    } else if (UNAVAILABLE_MESSAGES.has(current.message)) {
      return true;
    }
    current = current.cause;
  }
  return false;
}

/** Throws a one-line error for anything that is not a usable postgres:// URL. */
export function assertPostgresUrl(connectionString: string): void {
  if (!/^postgres(ql)?:\/\//i.test(connectionString) || !URL.canParse(connectionString)) {
    throw new DatabaseConnectionError(
      `not a PostgreSQL URL: ${maskUrl(connectionString)} (expected postgres://USER@HOST:5432/DATABASE)`,
    );
  }
}

interface PgLikeError {
  code?: string;
  message?: string;
}

/** Maps a failed connection attempt to a message that says what went wrong and where. */
export function describeConnectionError(
  error: unknown,
  connectionString: string,
  timeoutMs: number,
): DatabaseConnectionError {
  const { host, port, database, user } = describePostgresUrl(connectionString);
  const where = `PostgreSQL at ${host}:${port}`;
  const err = (error ?? {}) as PgLikeError;
  const message = err.message ?? String(error);
  let text: string;
  switch (err.code) {
    case 'ECONNREFUSED':
      text = `cannot connect to ${where}: connection refused (is the server running and listening there?)`;
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      text = `cannot connect to ${where}: host name "${host}" does not resolve`;
      break;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      text = `cannot connect to ${where}: ${err.code} (check the host, the port and any firewall)`;
      break;
    case '3D000':
      text = `database "${database}" does not exist on ${where}`;
      break;
    case '28P01':
    case '28000':
      text = `${where} refused user "${user}": ${message}`;
      break;
    case '57P03':
      text = `${where} is starting up or shutting down; try again in a moment`;
      break;
    default:
      text = /timeout/i.test(message)
        ? `cannot connect to ${where}: no answer within ${Math.round(timeoutMs / 1000)} s`
        : `cannot connect to ${where}: ${message}`;
  }
  return new DatabaseConnectionError(text, error);
}

/** The same server with another database name (keeps credentials and options). */
export function withDatabase(connectionString: string, database: string): string {
  const url = new URL(connectionString);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The database name a URL points at. */
export function databaseNameOf(connectionString: string): string {
  return describePostgresUrl(connectionString).database;
}

/** Advisory lock class ("lmsd") under which creators of one database name take turns. */
const CREATE_DATABASE_LOCK_CLASS = 0x6c6d7364;

/** CREATE DATABASE lost a race: 42P04, or 23505 when both inserted into pg_database at once. */
function isDuplicateDatabase(error: unknown): boolean {
  const { code, constraint } = error as { code?: string; constraint?: string };
  return code === '42P04' || (code === '23505' && constraint === 'pg_database_datname_index');
}

/**
 * Creates the database a URL names when it does not exist, connecting to the server's
 * `postgres` maintenance database. Returns whether it was created. Safe when several processes
 * (parallel CI jobs on a fresh server) ask at once: exactly one creates it.
 */
export async function createDatabaseIfMissing(connectionString: string): Promise<boolean> {
  const database = databaseNameOf(connectionString);
  const admin = await connectClient(withDatabase(connectionString, 'postgres'), { applicationName: 'lmsctl' });
  try {
    // CREATE DATABASE cannot run in a transaction, so check and create are serialised by a
    // session lock instead (released when this connection ends).
    await admin.query('SELECT pg_advisory_lock($1, hashtext($2))', [CREATE_DATABASE_LOCK_CLASS, database]);
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount) return false;
    try {
      await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)}`);
    } catch (error) {
      // Created in between by something that does not take the lock (createdb, psql): the
      // outcome is the one asked for.
      if (isDuplicateDatabase(error)) return false;
      throw error;
    }
    return true;
  } finally {
    await admin.end().catch(() => undefined);
  }
}
