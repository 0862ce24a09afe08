import { connectClient, describePostgresUrl, errorMessage, withDatabase } from '@lms/core';
import type pg from 'pg';
import type { CommandContext } from '../context.js';
import { reachesThroughPooler } from '../postgres/direct-connection.js';
import { probe, type StatusItem } from './probes.js';

/** A client waiting this long for a server connection means the pool is too small for the load. */
const WAIT_WARN_SECONDS = 1;

interface PoolRow {
  database: string;
  user: string;
  cl_active: number;
  cl_waiting: number;
  sv_active: number;
  sv_idle: number;
  sv_used: number;
  maxwait: number;
  maxwait_us: number;
  pool_mode: string;
}

/** SHOW STATS: bigint columns arrive as strings; averages are per second over the stats period. */
interface StatsRow {
  database: string;
  avg_xact_count: string;
  avg_xact_time: string;
  avg_wait_time: string;
}

interface DatabaseRow {
  name: string;
  pool_size: number;
}

/** What `status` reports of the pooler between the app and PostgreSQL. */
export interface PgBouncerFacts {
  version: string;
  poolMode: string;
  clientsActive: number;
  clientsWaiting: number;
  longestWaitSeconds: number;
  serversActive: number;
  serversIdle: number;
  poolSize: number | null;
  transactionsPerSecond: number;
  averageTransactionMs: number;
  averageWaitMs: number;
}

/** Reads the pools and traffic of `database` from PgBouncer's admin console. */
async function readFacts(admin: pg.Client, database: string): Promise<PgBouncerFacts> {
  const version = (await admin.query<{ version: string }>('SHOW VERSION')).rows[0]?.version ?? 'PgBouncer';
  const pools = (await admin.query<PoolRow>('SHOW POOLS')).rows.filter((row) => row.database === database);
  const stats = (await admin.query<StatsRow>('SHOW STATS')).rows.find((row) => row.database === database);
  const pool = (await admin.query<DatabaseRow>('SHOW DATABASES')).rows.find((row) => row.name === database);
  const sum = (pick: (row: PoolRow) => number) => pools.reduce((total, row) => total + Number(pick(row)), 0);
  return {
    version,
    poolMode: pools[0]?.pool_mode ?? 'unknown',
    clientsActive: sum((row) => row.cl_active),
    clientsWaiting: sum((row) => row.cl_waiting),
    longestWaitSeconds: Math.max(0, ...pools.map((row) => Number(row.maxwait) + Number(row.maxwait_us) / 1e6)),
    serversActive: sum((row) => row.sv_active),
    serversIdle: sum((row) => row.sv_idle + row.sv_used),
    poolSize: pool ? Number(pool.pool_size) : null,
    transactionsPerSecond: Number(stats?.avg_xact_count ?? 0),
    // Microseconds in SHOW STATS.
    averageTransactionMs: Number(stats?.avg_xact_time ?? 0) / 1000,
    averageWaitMs: Number(stats?.avg_wait_time ?? 0) / 1000,
  };
}

/**
 * `status`'s line for PgBouncer, when DATABASE_URL reaches PostgreSQL through a pooler (nothing
 * otherwise): the application database's pool and traffic from PgBouncer's admin console, the
 * `pgbouncer` database at the same address, as the same user (who must be in PgBouncer's
 * `stats_users` or `admin_users`). Clients waiting for a server connection are a warning: the
 * pool is too small for the load, and requests queue in PgBouncer.
 */
export async function probePgBouncer(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [];
  return probe('pgbouncer', async () => {
    // The postgresql line reports a server that does not answer; this one has nothing to add then.
    const client = await connectClient(url, { applicationName: 'lmsctl status', timeoutMs: 3_000 }).catch(() => null);
    if (!client) return [];
    try {
      if (!(await reachesThroughPooler(client))) return [];
    } finally {
      await client.end().catch(() => undefined);
    }
    const { host, port, database, user } = describePostgresUrl(url);
    const where = `${host}:${port}`;
    let admin: pg.Client;
    try {
      admin = await connectClient(withDatabase(url, 'pgbouncer'), {
        applicationName: 'lmsctl status',
        timeoutMs: 3_000,
      });
    } catch (error) {
      return {
        name: 'pgbouncer',
        state: 'warn',
        detail: `DATABASE_URL goes through a pooler at ${where}, whose admin console refused: ${errorMessage(error)} — add ${user} to PgBouncer's stats_users to see its pools`,
      };
    }
    let facts: PgBouncerFacts;
    try {
      facts = await readFacts(admin, database);
    } finally {
      await admin.end().catch(() => undefined);
    }
    const waiting = facts.clientsWaiting > 0 || facts.longestWaitSeconds >= WAIT_WARN_SECONDS;
    const servers = `${facts.serversActive} of ${facts.poolSize ?? '?'} server connections busy, ${facts.serversIdle} idle`;
    return {
      name: 'pgbouncer',
      state: waiting ? 'warn' : 'ok',
      detail:
        `${facts.version} at ${where}, ${facts.poolMode} pooling of ${database}: ${facts.clientsActive} clients active, ` +
        `${facts.clientsWaiting} waiting${facts.longestWaitSeconds > 0 ? ` (longest ${facts.longestWaitSeconds.toFixed(1)} s)` : ''}, ${servers}; ` +
        `${facts.transactionsPerSecond} transactions/s, ${facts.averageTransactionMs.toFixed(1)} ms each` +
        (waiting
          ? ' — clients wait for a server connection: raise its pool size (PGBOUNCER_POOL_SIZE) if PostgreSQL has room'
          : ''),
      data: { ...facts },
    };
  });
}
