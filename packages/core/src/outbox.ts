import type pg from 'pg';
import { jobSchemas, type JobName, type JobOf } from './jobs.js';

/** Anything that runs parameterised queries: a pool, a pooled client (a transaction), a client. */
export type Queryable = Pick<pg.Pool, 'query'>;

/**
 * Queues job `name` through the outbox: a row written with `db`, so inside the caller's
 * transaction it commits (or rolls back) with the change that caused the job. The worker's relay
 * moves it to BullMQ with `jobId` as the job id. The payload is parsed with its schema first, so
 * a bad one fails the caller's transaction instead of the relay. A `jobId` already in the outbox
 * is the same job: nothing is written (false).
 */
export async function queueJob<N extends JobName>(
  db: Queryable,
  name: N,
  data: JobOf<N>,
  jobId: string,
): Promise<boolean> {
  const payload = jobSchemas[name].parse(data) as JobOf<N>;
  const { rowCount } = await db.query(
    'INSERT INTO outbox (job_name, payload, job_id) VALUES ($1, $2, $3) ON CONFLICT (job_id) DO NOTHING',
    [name, JSON.stringify(payload), jobId],
  );
  return rowCount === 1;
}

/** An unsent outbox row, as the relay reads it. */
export interface OutboxRow {
  id: string;
  job_name: string;
  payload: unknown;
  job_id: string;
}

/**
 * Locks up to `limit` unsent rows, oldest first, skipping rows another relay holds and the ids in
 * `skip`: any number of worker processes relay side by side, each row by one of them. Run inside
 * a transaction; the locks last until it ends.
 */
export async function claimUnsentOutbox(
  client: Queryable,
  limit: number,
  skip: readonly string[] = [],
): Promise<OutboxRow[]> {
  const { rows } = await client.query<OutboxRow>(
    `SELECT id::text AS id, job_name, payload, job_id FROM outbox
      WHERE sent_at IS NULL AND NOT (id = ANY ($2::bigint[]))
      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit, skip],
  );
  return rows;
}

export async function markOutboxSent(client: Queryable, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await client.query('UPDATE outbox SET sent_at = now() WHERE id = ANY ($1::bigint[])', [ids]);
}

/** Counts a failed relay of row `id` and keeps its reason; the row stays unsent. */
export async function recordOutboxFailure(client: Queryable, id: string, error: string): Promise<void> {
  await client.query('UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1', [
    id,
    error.slice(0, 1000),
  ]);
}

/** What waits in the outbox: unsent rows and the age of the oldest (0 when none). */
export async function outboxBacklog(db: Queryable): Promise<{ unsent: number; oldestAgeSeconds: number }> {
  const { rows } = await db.query<{ unsent: string; oldest_age: number | null }>(
    `SELECT count(*) AS unsent, extract(epoch FROM now() - min(created_at))::float8 AS oldest_age
       FROM outbox WHERE sent_at IS NULL`,
  );
  const row = rows[0];
  return { unsent: Number(row?.unsent ?? 0), oldestAgeSeconds: Math.max(0, row?.oldest_age ?? 0) };
}
