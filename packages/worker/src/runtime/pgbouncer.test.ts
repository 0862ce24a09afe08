/**
 * The worker behind PgBouncer in transaction mode (Debian's pgbouncer, started here): its pool
 * goes through the pooler, its migration check to the server itself, and the soft time limit
 * still cancels a statement stuck behind a lock — a cancel by process id (`pg_cancel_backend`)
 * would name PgBouncer's made-up id and cancel nothing, leaving the statement to hold its server
 * connection past the hard limit.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startPgBouncer, type PgBouncer } from '@lms/core/testing';
import { enroll, insertCourse, insertUser } from '../testing/factories.js';
import { createWorkerTestEnv, eventually, waitForJobState, type WorkerTestEnv } from '../testing/worker-harness.js';

let env: WorkerTestEnv;
let bouncer: PgBouncer;

beforeAll(async () => {
  env = await createWorkerTestEnv('pgbouncer');
  try {
    bouncer = await startPgBouncer({ poolMode: 'transaction', poolSize: 2 });
  } catch (error) {
    await env.cleanup();
    throw error;
  }
});

afterAll(async () => {
  try {
    await bouncer?.stop();
  } finally {
    await env?.cleanup();
  }
});

interface PoolRow {
  database: string;
  cl_active: number;
  cl_waiting: number;
  sv_active: number;
}

/** PgBouncer's pool of the test database, from its admin console. */
async function poolOfTestDatabase(): Promise<PoolRow> {
  const admin = new pg.Client({ connectionString: bouncer.adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<PoolRow>('SHOW POOLS');
    return (
      rows.find((row) => row.database === env.database.name) ?? {
        database: env.database.name,
        cl_active: 0,
        cl_waiting: 0,
        sv_active: 0,
      }
    );
  } finally {
    await admin.end();
  }
}

/** Sessions of the test database waiting on a lock, seen on the server itself. */
async function waitingOnLocks(): Promise<number> {
  const { rows } = await env.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}

describe('worker through PgBouncer (transaction pooling)', () => {
  it('cancels a statement stuck behind a lock at the soft limit: the server connection is free long before the hard limit', async () => {
    const pooled = bouncer.urlOf(env.database.name);
    const worker = await env.startWorker({
      env: { DATABASE_URL: pooled, DATABASE_DIRECT_URL: env.database.url },
      queues: ['progress'],
      limits: {
        emails: { softMs: 1_000, hardMs: 20_000 },
        progress: { softMs: 1_000, hardMs: 20_000 },
        certificates: { softMs: 1_000, hardMs: 20_000 },
        webhooks: { softMs: 1_000, hardMs: 20_000 },
      },
    });
    // The pool really goes through PgBouncer: the process id it was given is not the server's.
    const probe = await worker.pool.connect();
    try {
      const { rows } = await probe.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect((probe as unknown as { processID: number }).processID).not.toBe(rows[0]!.pid);
    } finally {
      probe.release();
    }

    const course = await insertCourse(env.db, { lessons: 1 });
    const student = await insertUser(env.db);
    const enrollmentId = await enroll(env.db, student.id, course.id);
    const holder = await env.db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM enrollments WHERE id = $1 FOR UPDATE', [enrollmentId]);
      const started = Date.now();
      const job = await env.queue('progress').add('progress.recompute', { enrollmentId }, { attempts: 1 });
      // Stuck: the recompute locks the enrolment first and waits, on a server connection of PgBouncer's.
      await eventually(async () => (await waitingOnLocks()) === 1 && (await poolOfTestDatabase()).sv_active === 1);

      const failed = await waitForJobState(env.queue('progress'), job.id!, 'failed');
      expect(failed.failedReason).toBe(
        'progress.recompute exceeded the soft time limit of 1 s: canceling statement due to user request',
      );
      // The lock is still held by the test, yet nothing waits on it any more and PgBouncer's
      // server connection is back in its pool: all well before the 20 s hard limit.
      expect(await waitingOnLocks()).toBe(0);
      await eventually(async () => (await poolOfTestDatabase()).sv_active === 0);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  });

  it('checks the migrations on DATABASE_DIRECT_URL, not through the pooler', async () => {
    const empty = await createTestDatabase('pgbouncer_empty');
    try {
      // The pool would reach the migrated database; the direct URL names an unmigrated one.
      await expect(
        env.startWorker({
          env: { DATABASE_URL: bouncer.urlOf(env.database.name), DATABASE_DIRECT_URL: empty.url },
          queues: ['progress'],
        }),
      ).rejects.toThrow(/the database is not migrated .*run `pnpm lmsctl migrate` first/);
    } finally {
      await empty.drop();
    }
  });
});
