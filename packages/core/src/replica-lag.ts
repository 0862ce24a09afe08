import type { QueryResultRow } from 'pg';

/** A pool, a client, or anything else that runs a statement and returns its rows. */
export interface SqlRunner {
  query<R extends QueryResultRow>(text: string, params?: unknown[]): Promise<{ rows: R[] }>;
}

/** What a read replica says about itself, measured against its primary. */
export interface ReplicaState {
  /**
   * The server is a hot standby (`pg_is_in_recovery()`). False for a primary, including a
   * former replica that was promoted: it no longer follows DATABASE_URL.
   */
  standby: boolean;
  /**
   * How far behind the primary its data is, in seconds: 0 when it has replayed everything the
   * primary had written when the measurement began; else the time since the last transaction it
   * replayed was committed (an upper bound: while replay stands still it grows by the second).
   * Null for a standby that is behind but has replayed no transaction since it started.
   */
  lagSeconds: number | null;
  /** Replay is paused (`pg_wal_replay_pause()`); null where the server does not say. */
  replayPaused: boolean | null;
}

/**
 * Measures a replica's lag. The primary's WAL position is read first (skipped when `primary`
 * is null or does not answer), so "caught up" means the replica holds every transaction
 * committed before the measurement began. Without it, a standby that has replayed all it
 * received counts as caught up.
 *
 * Why not `now() - pg_last_xact_replay_timestamp()` alone: on a quiet primary that grows without
 * anything being behind. Why not the primary's `pg_stat_replication.replay_lag`: it stops
 * growing while replay is paused, and an application role may not see other sessions' rows.
 * Every function used here is executable by any role (PostgreSQL 10 and later), managed servers
 * included.
 */
export async function measureReplica(replica: SqlRunner, primary: SqlRunner | null): Promise<ReplicaState> {
  let primaryLsn: string | null = null;
  if (primary) {
    try {
      const { rows } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      primaryLsn = rows[0]?.lsn ?? null;
    } catch {
      // The primary is down or is itself a standby: the replica's own positions still tell a lot.
      primaryLsn = null;
    }
  }
  const { rows } = await replica.query<{
    standby: boolean;
    caught_up: boolean | null;
    since_replay: number | null;
    paused: boolean | null;
  }>(
    `SELECT pg_is_in_recovery() AS standby,
            CASE WHEN NOT pg_is_in_recovery() THEN NULL
                 WHEN $1::pg_lsn IS NOT NULL THEN pg_last_wal_replay_lsn() >= $1::pg_lsn
                 ELSE pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() END AS caught_up,
            extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS since_replay,
            CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused`,
    [primaryLsn],
  );
  const row = rows[0];
  if (!row) throw new Error('the replica returned no row for its replication state');
  if (!row.standby) return { standby: false, lagSeconds: 0, replayPaused: null };
  const lagSeconds = row.caught_up ? 0 : row.since_replay === null ? null : Math.max(0, row.since_replay);
  return { standby: true, lagSeconds, replayPaused: row.paused };
}
