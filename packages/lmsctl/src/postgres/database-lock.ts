import { connectClient, describePostgresUrl, withDatabase } from '@lms/core/essentials';
import type pg from 'pg';
import { CliError, ExitCode } from '../errors.js';

/**
 * The lock that keeps `lmsctl db maintain` apart from a backup or restore of the same database.
 * Backups and restores hold it shared (they may overlap each other, as before), maintenance holds
 * it exclusively: VACUUM cannot remove what a backup's snapshot still sees, REINDEX CONCURRENTLY
 * waits for that snapshot to end, and a restore swaps the database away underneath it.
 *
 * An advisory lock is scoped to the database of the session that takes it, and a restore cannot
 * stay connected to the database it replaces: every holder takes it in the server's `postgres`
 * database, keyed by the name of the database it is about. A session lock ends with its
 * connection, so a killed lmsctl never leaves it behind.
 */
const OPERATION_LOCK_CLASS = 0x6c6d736f; // "lmso"

export type LockMode = 'shared' | 'exclusive';

/** A session holding the lock: its application name says which lmsctl command it is. */
export interface LockHolder {
  pid: number;
  applicationName: string;
  mode: LockMode;
}

/**
 * Takes the operation lock of `database` on `client` (connected to the `postgres` database)
 * without waiting; true when it is now held, until the connection ends.
 */
export async function tryLockDatabase(client: pg.Client, database: string, mode: LockMode): Promise<boolean> {
  const fn = mode === 'shared' ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
  const { rows } = await client.query<{ locked: boolean }>(`SELECT ${fn}($1, hashtext($2)) AS locked`, [
    OPERATION_LOCK_CLASS,
    database,
  ]);
  return rows[0]?.locked === true;
}

/** The other sessions that hold the operation lock of `database`, from any connection to the server. */
export async function lockHolders(client: pg.Client, database: string): Promise<LockHolder[]> {
  const { rows } = await client.query<{ pid: number; application_name: string | null; mode: string }>(
    `SELECT l.pid, a.application_name, l.mode
       FROM pg_locks l
       JOIN pg_database d ON d.oid = l.database AND d.datname = 'postgres'
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.classid = $1::int::oid AND l.objid = hashtext($2)::oid AND l.pid <> pg_backend_pid()
      ORDER BY l.pid`,
    [OPERATION_LOCK_CLASS, database],
  );
  return rows.map((row) => ({
    pid: row.pid,
    applicationName: row.application_name || 'unnamed client',
    mode: row.mode === 'ShareLock' ? 'shared' : 'exclusive',
  }));
}

/** "lmsctl backup (pid 123), lmsctl restore (pid 456)" */
export function describeHolders(holders: LockHolder[]): string {
  return holders.length
    ? holders.map((holder) => `${holder.applicationName} (pid ${holder.pid})`).join(', ')
    : 'another lmsctl command';
}

/**
 * Takes the lock on `client` or throws the one line an operator needs: `doing` is what was
 * refused ("back up", "maintain"), `hint` when to try again.
 */
export async function lockDatabaseOrRefuse(
  client: pg.Client,
  target: { name: string; host: string; port: number },
  mode: LockMode,
  doing: string,
): Promise<void> {
  if (await tryLockDatabase(client, target.name, mode)) return;
  const holders = await lockHolders(client, target.name);
  throw new CliError(
    ExitCode.failed,
    `cannot ${doing} ${target.name} on ${target.host}:${target.port} while ${describeHolders(holders)} works on it`,
    'run it again when that has finished',
  );
}

/**
 * Opens a connection to the `postgres` database of `url`'s server that holds the operation lock
 * of `url`'s database until `release` (or until lmsctl dies).
 */
export async function holdDatabaseLock(
  url: string,
  mode: LockMode,
  options: { applicationName: string; doing: string },
): Promise<{ release(): Promise<void> }> {
  const session = await openLockSession(url, options.applicationName);
  await session.lock(mode, options.doing);
  return session;
}

/** A connection to the `postgres` database of `url`'s server, ready to take `url`'s database's lock. */
export interface LockSession {
  /** Takes the lock (or refuses, closing the session); held until `release`. */
  lock(mode: LockMode, doing: string): Promise<void>;
  release(): Promise<void>;
}

/**
 * `holdDatabaseLock` in two steps, for a command that connects for the lock and for its work at
 * once and checks its work connection (not through a pooler) before taking the lock.
 */
export async function openLockSession(url: string, applicationName: string): Promise<LockSession> {
  const target = describePostgresUrl(url);
  const client = await connectClient(withDatabase(url, 'postgres'), { applicationName });
  let ended: Promise<void> | null = null;
  // Idempotent: a refused lock ends the session, and the caller's clean-up may end it again.
  const release = () => (ended ??= client.end().catch(() => undefined));
  return {
    async lock(mode, doing) {
      try {
        await lockDatabaseOrRefuse(
          client,
          { name: target.database, host: target.host, port: target.port },
          mode,
          doing,
        );
      } catch (error) {
        await release();
        throw error;
      }
    },
    release,
  };
}
