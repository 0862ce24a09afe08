import type pg from 'pg';
import { cancelRunningStatement } from './cancel-request.js';
import { isQueryTimeout } from './db.js';

/**
 * Runs `work` in one transaction on a pooled client: committed when it resolves, rolled back
 * when it throws (and when the process dies half-way, since the server drops the connection).
 * The one transaction primitive of the api and the worker: to roll back, `work` throws.
 *
 * With the job's `signal`, the statement running when it fires (the soft time limit, or a stop)
 * is cancelled on the server: a run stuck on a lock or a slow query then rolls back and frees
 * its locks and its connection, instead of holding them after the caller has given up on it.
 * The cancel is the protocol's CancelRequest, so it also works through PgBouncer.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  signal?.throwIfAborted();
  const client = await pool.connect();
  let cancelled: Promise<void> | undefined;
  const cancel = () => {
    cancelled = cancelRunningStatement(client);
  };
  signal?.addEventListener('abort', cancel, { once: true });
  let broken = false;
  try {
    return await inTransaction(client, () => work(client), {
      // A connection that cannot even roll back is dropped instead of going back to the pool.
      onRollbackFailed: () => (broken = true),
    });
  } finally {
    signal?.removeEventListener('abort', cancel);
    // A cancel reaches the server on its own connection and may land after the statement it was
    // meant for; a connection that was sent one is dropped, so it cannot hit the next user's.
    if (cancelled) {
      await cancelled;
      broken = true;
    }
    client.release(broken);
  }
}

/**
 * The transaction itself, on a connection the caller already holds (a CLI's single client):
 * BEGIN, `work`, COMMIT; ROLLBACK when `work` throws, and the error goes on. `withTransaction`
 * is this on a pooled client.
 */
export async function inTransaction<T>(
  client: Pick<pg.ClientBase, 'query'>,
  work: () => Promise<T>,
  options: { onRollbackFailed?: (error: unknown) => void } = {},
): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    // A query still waiting for its answer holds the connection: ROLLBACK would queue behind it
    // and wait as long again. Dropping the connection rolls back just the same, on the server.
    if (isQueryTimeout(error)) {
      options.onRollbackFailed?.(error);
      throw error;
    }
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      options.onRollbackFailed?.(rollbackError);
    }
    throw error;
  }
}
