import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, createPool } from './db.js';
import { createTestDatabase, type TestDatabase } from './testing/index.js';
import { withTransaction } from './transaction.js';

let database: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  database = await createTestDatabase('core_tx');
  // The pool the api and the worker use: it keeps a dying checked-out connection from crashing the process.
  pool = createPool({
    connectionString: database.url,
    applicationName: 'core-transaction-test',
    config: {
      DB_POOL_SIZE: 0,
      DB_MAX_OVERFLOW: 3,
      DB_IDLE_TIMEOUT_SECONDS: 30,
      DB_POOL_TIMEOUT_SECONDS: 10,
      DB_POOL_RECYCLE_SECONDS: 3600,
      DB_STATEMENT_TIMEOUT_SECONDS: 0,
      DB_QUERY_TIMEOUT_SECONDS: 0,
    },
  });
  await pool.query('CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)');
  await pool.query('INSERT INTO counters VALUES (1, 0)');
});

afterAll(async () => {
  await pool.end();
  await database.drop();
});

describe('withTransaction', () => {
  it('commits what the work did when it resolves, and rolls all of it back when it throws', async () => {
    await pool.query('INSERT INTO counters VALUES (2, 0)');
    const returned = await withTransaction(pool, async (client) => {
      await client.query('UPDATE counters SET n = n + 1 WHERE id = 2');
      return 'done';
    });
    expect(returned).toBe('done');
    await expect(
      withTransaction(pool, async (client) => {
        await client.query('UPDATE counters SET n = n + 10 WHERE id = 2');
        await client.query('INSERT INTO counters VALUES (2, 0)');
      }),
    ).rejects.toThrow(/duplicate key value violates unique constraint "counters_pkey"/);
    expect((await pool.query<{ n: number }>('SELECT n FROM counters WHERE id = 2')).rows[0]!.n).toBe(1);
  });

  it('drops a connection that died mid-transaction instead of returning it to the pool, and throws what the work hit', async () => {
    await pool.query('SELECT 1');
    const before = pool.totalCount;
    await expect(
      withTransaction(pool, (client) => client.query('SELECT pg_terminate_backend(pg_backend_pid())')),
    ).rejects.toThrow(/terminating connection due to administrator command/);
    expect(pool.totalCount).toBe(before - 1);
    expect((await withTransaction(pool, (client) => client.query<{ one: number }>('SELECT 1 AS one'))).rows).toEqual([
      { one: 1 },
    ]);
  });

  it('cancels the statement waiting on a lock when the signal fires, and rolls back', async () => {
    const holder = await connectClient(database.url);
    try {
      await holder.query('BEGIN');
      await holder.query('UPDATE counters SET n = n + 100 WHERE id = 1');
      const controller = new AbortController();
      const stuck = withTransaction(
        pool,
        (client) => client.query('UPDATE counters SET n = n + 1 WHERE id = 1'),
        controller.signal,
      );
      setTimeout(() => controller.abort(new Error('soft limit')), 300);
      await expect(stuck).rejects.toThrow(/canceling statement due to user request/);
      // Nothing of it is left waiting on the server; the lock holder's work is untouched.
      const waiting = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      expect(waiting.rows[0]!.n).toBe(0);
      await holder.query('COMMIT');
      expect((await pool.query<{ n: number }>('SELECT n FROM counters WHERE id = 1')).rows[0]!.n).toBe(100);
    } finally {
      await holder.end();
    }
  });

  it('does not start when the signal has already fired', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stopping'));
    await expect(withTransaction(pool, (client) => client.query('SELECT 1'), controller.signal)).rejects.toThrow(
      'stopping',
    );
  });
});
