import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { withTransaction } from './transaction.js';

let database: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  database = await createTestDatabase('worker_tx');
  pool = new pg.Pool({ connectionString: database.url, max: 3 });
  await pool.query('CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)');
  await pool.query('INSERT INTO counters VALUES (1, 0)');
});

afterAll(async () => {
  await pool.end();
  await database.drop();
});

describe('withTransaction', () => {
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
