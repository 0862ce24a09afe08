import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from './db.js';
import { loadConfig } from './config.js';
import { defaultMigrationsDir } from './migrations/migration-files.js';
import { Migrator } from './migrations/migrator.js';
import { claimUnsentOutbox, markOutboxSent, outboxBacklog, queueJob, recordOutboxFailure } from './outbox.js';
import { createTestDatabase, type TestDatabase } from './testing/index.js';
import { withTransaction } from './transaction.js';

let database: TestDatabase;
let pool: ReturnType<typeof createPool>;

beforeAll(async () => {
  database = await createTestDatabase('outbox');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  pool = createPool({
    connectionString: database.url,
    config: loadConfig({ DB_POOL_SIZE: '3' }),
    applicationName: 'test',
  });
});

afterAll(async () => {
  await pool.end();
  await database.drop();
});

const enrollmentId = '00000000-0000-4000-8000-000000000001';

describe('the outbox', () => {
  it('writes a job with its transaction: a rollback leaves nothing, a repeated job id is one row', async () => {
    await expect(
      withTransaction(pool, async (tx) => {
        await queueJob(tx, 'progress.recompute', { enrollmentId }, 'rolled-back');
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await queueJob(pool, 'progress.recompute', { enrollmentId }, 'once')).toBe(true);
    expect(await queueJob(pool, 'progress.recompute', { enrollmentId }, 'once')).toBe(false);
    const { rows } = await pool.query<{ job_id: string; payload: unknown }>('SELECT job_id, payload FROM outbox');
    expect(rows).toEqual([{ job_id: 'once', payload: { enrollmentId } }]);
    await pool.query('DELETE FROM outbox');
  });

  it('refuses a payload that breaks its schema, writing nothing', async () => {
    await expect(queueJob(pool, 'progress.recompute', { enrollmentId: 'e-1' }, 'bad')).rejects.toThrow(/UUID/);
    expect((await pool.query('SELECT 1 FROM outbox')).rowCount).toBe(0);
  });

  it('hands each unsent row to one relay, counts failures and reports the backlog', async () => {
    for (const n of [1, 2, 3]) await queueJob(pool, 'progress.recompute', { enrollmentId }, `row-${n}`);
    expect((await outboxBacklog(pool)).unsent).toBe(3);
    const first = await pool.connect();
    try {
      await first.query('BEGIN');
      const claimed = await claimUnsentOutbox(first, 2);
      expect(claimed.map((row) => row.job_id)).toEqual(['row-1', 'row-2']);
      // A second relay meanwhile gets only what the first does not hold.
      const second = await withTransaction(pool, (tx) => claimUnsentOutbox(tx, 10));
      expect(second.map((row) => row.job_id)).toEqual(['row-3']);
      await markOutboxSent(first, [claimed[0]!.id]);
      await recordOutboxFailure(first, claimed[1]!.id, 'Redis is down');
      await first.query('COMMIT');
    } finally {
      first.release();
    }
    const { rows } = await pool.query<{ job_id: string; sent: boolean; attempts: number; last_error: string | null }>(
      'SELECT job_id, sent_at IS NOT NULL AS sent, attempts, last_error FROM outbox ORDER BY id',
    );
    expect(rows).toEqual([
      { job_id: 'row-1', sent: true, attempts: 0, last_error: null },
      { job_id: 'row-2', sent: false, attempts: 1, last_error: 'Redis is down' },
      { job_id: 'row-3', sent: false, attempts: 0, last_error: null },
    ]);
    const backlog = await outboxBacklog(pool);
    expect(backlog.unsent).toBe(2);
    expect(backlog.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    await pool.query('DELETE FROM outbox');
    expect(await outboxBacklog(pool)).toEqual({ unsent: 0, oldestAgeSeconds: 0 });
  });
});
