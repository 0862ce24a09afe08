import { Queue } from 'bullmq';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { queueNames, redisConnectionOptions, withTransaction, type JobName, type QueueName } from '@lms/core';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import type { JobContext, JobHandler, JobHandlers } from '../job-types.js';
import { eventually, silentLogger, waitForJobState } from '../testing/worker-harness.js';
import { SoftTimeLimitError, type TimeLimits } from '../time-limits.js';
import { createQueueWorkers, type QueueWorkers } from './job-runner.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';

const prefix = testRedisPrefix('runner');
const connection = redisConnectionOptions(testRedisUrl);
const queues = new Map<QueueName, Queue>();
let running: QueueWorkers | undefined;

beforeAll(() => {
  for (const name of queueNames) queues.set(name, new Queue(name, { connection, prefix }));
});

afterEach(async () => {
  await running?.close({ force: true });
  running = undefined;
  for (const queue of queues.values()) await queue.obliterate({ force: true });
});

afterAll(async () => {
  for (const queue of queues.values()) await queue.close();
});

const progress = () => queues.get('progress')!;
const noop = () => Promise.resolve();

/** Handlers that do nothing, with the ones a test cares about replaced. */
function handlers(overrides: Partial<JobHandlers> = {}): JobHandlers {
  return {
    'email.send': noop,
    'progress.recompute': noop,
    'certificate.render': noop,
    'webhook.deliver': noop,
    'maintenance.cleanup': noop,
    'email.inactivity-reminders': noop,
    'progress.reconcile': noop,
    ...overrides,
  };
}

function start(
  overrides: Partial<JobHandlers>,
  limits: TimeLimits = { softMs: 10_000, hardMs: 20_000 },
  retryAfterHardLimit: Partial<Record<JobName, boolean>> = {},
): { metrics: WorkerMetrics } {
  const metrics = createWorkerMetrics({ defaultMetrics: false });
  running = createQueueWorkers({
    queues: ['progress'],
    handlers: handlers(overrides),
    connection,
    prefix,
    concurrency: { emails: 1, progress: 1, certificates: 1, webhooks: 1 },
    limits: { emails: limits, progress: limits, certificates: limits, webhooks: limits },
    metrics,
    logger: silentLogger,
    retryAfterHardLimit,
  });
  return { metrics };
}

async function counter(metrics: WorkerMetrics, labels: Record<string, string>): Promise<number> {
  const { values } = await metrics.jobsTotal.get();
  // Summed: every series exists from the start (at 0), so several may match the labels.
  return values
    .filter((value) => Object.entries(labels).every(([key, v]) => (value.labels as Record<string, unknown>)[key] === v))
    .reduce((sum, value) => sum + value.value, 0);
}

const ENROLLMENT = '7d1c7f8e-1b0a-4c57-9a5e-6f1f3f0e2a11';

describe('the job wrapper', () => {
  it('runs the handler with the parsed payload and counts and times the run', async () => {
    const seen: unknown[] = [];
    const { metrics } = start({
      'progress.recompute': (data, ctx) => {
        seen.push({ data, attempt: ctx.attempt, aborted: ctx.signal.aborted });
        return Promise.resolve();
      },
    });
    // Unknown keys are stripped by the schema before the handler sees the payload.
    const job = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT, extra: 1 });
    await waitForJobState(progress(), job.id!, 'completed');
    expect(seen).toEqual([{ data: { enrollmentId: ENROLLMENT }, attempt: 1, aborted: false }]);
    expect(await counter(metrics, { queue: 'progress', name: 'progress.recompute', status: 'completed' })).toBe(1);
    const histogram = await metrics.jobDuration.get();
    expect(histogram.values.find((value) => value.metricName === 'lms_job_duration_seconds_count')?.value).toBe(1);
  });

  it('fails an unknown job name for good with a clear reason, and keeps serving', async () => {
    const { metrics } = start({});
    const unknown = await progress().add('progress.explode', {}, { attempts: 3 });
    const wrongQueue = await progress().add(
      'email.send',
      { to: 'a@example.com', template: 'welcome', props: {}, idempotencyKey: 'k' },
      { attempts: 3 },
    );
    const failed = await waitForJobState(progress(), unknown.id!, 'failed');
    expect(failed.failedReason).toBe('unknown job "progress.explode" on the progress queue: no handler for it');
    expect(failed.attemptsMade).toBe(1);
    const misrouted = await waitForJobState(progress(), wrongQueue.id!, 'failed');
    expect(misrouted.failedReason).toMatch(/unknown job "email.send" on the progress queue/);

    const next = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT });
    await waitForJobState(progress(), next.id!, 'completed');
    expect(await counter(metrics, { name: 'unknown', status: 'failed' })).toBe(1);
  });

  it('fails a payload that breaks its schema for good, naming the field', async () => {
    start({});
    const job = await progress().add('progress.recompute', { enrollment: 42 }, { attempts: 3 });
    const failed = await waitForJobState(progress(), job.id!, 'failed');
    expect(failed.failedReason).toMatch(/^invalid payload for progress\.recompute: enrollmentId: /);
    expect(failed.attemptsMade).toBe(1);
  });

  it('retries a failing job with exponential backoff until it succeeds', async () => {
    const calls: number[] = [];
    const { metrics } = start({
      'progress.recompute': () => {
        calls.push(Date.now());
        return calls.length < 3 ? Promise.reject(new Error(`flaky ${calls.length}`)) : Promise.resolve();
      },
    });
    const job = await progress().add(
      'progress.recompute',
      { enrollmentId: ENROLLMENT },
      { attempts: 4, backoff: { type: 'exponential', delay: 300 } },
    );
    const done = await waitForJobState(progress(), job.id!, 'completed');
    expect(calls).toHaveLength(3);
    expect(done.attemptsMade).toBe(3);
    // 300 ms, then 600 ms: each wait doubles.
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(290);
    expect(calls[2]! - calls[1]!).toBeGreaterThanOrEqual(590);
    expect(await counter(metrics, { status: 'retried' })).toBe(2);
    expect(await counter(metrics, { status: 'completed' })).toBe(1);
  });

  it('fails the job with the last reason once its attempts are used up', async () => {
    const { metrics } = start({
      'progress.recompute': () => Promise.reject(new Error('database said no')),
    });
    const job = await progress().add(
      'progress.recompute',
      { enrollmentId: ENROLLMENT },
      { attempts: 2, backoff: { type: 'exponential', delay: 100 } },
    );
    const failed = await waitForJobState(progress(), job.id!, 'failed');
    expect(failed.failedReason).toBe('database said no');
    expect(failed.attemptsMade).toBe(2);
    expect(await counter(metrics, { status: 'retried' })).toBe(1);
    expect(await counter(metrics, { status: 'failed' })).toBe(1);
  });

  it('fires the abort signal at the soft limit; a handler that stops fails with the reason', async () => {
    const reasons: unknown[] = [];
    start(
      {
        'progress.recompute': (_data, ctx: JobContext) =>
          new Promise((_, reject) => {
            ctx.signal.addEventListener('abort', () => {
              reasons.push(ctx.signal.reason);
              reject(new Error('stopped cleanly'));
            });
          }),
      },
      { softMs: 300, hardMs: 5000 },
    );
    const started = Date.now();
    const job = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT }, { attempts: 1 });
    const failed = await waitForJobState(progress(), job.id!, 'failed');
    expect(Date.now() - started).toBeLessThan(4000);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(SoftTimeLimitError);
    expect(failed.failedReason).toBe('progress.recompute exceeded the soft time limit of 0.3 s: stopped cleanly');
  });

  it('lets a handler that finishes after the soft limit complete', async () => {
    start(
      {
        'progress.recompute': async (_data, ctx) => {
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        },
      },
      { softMs: 200, hardMs: 5000 },
    );
    const job = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT });
    await waitForJobState(progress(), job.id!, 'completed');
  });

  it('fails a job at the hard limit with the time-limit reason, frees the slot and keeps serving', async () => {
    let release: () => void = () => undefined;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    let runs = 0;
    const { metrics } = start(
      {
        'progress.recompute': async () => {
          runs++;
          // The first run ignores its signal and never ends on its own.
          if (runs === 1) await stuck;
        },
      },
      { softMs: 200, hardMs: 700 },
    );
    try {
      const hung = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT }, { attempts: 3 });
      const next = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT });
      const failed = await waitForJobState(progress(), hung.id!, 'failed');
      expect(failed.failedReason).toBe('progress.recompute exceeded the hard time limit of 0.7 s');
      // Not retried: the abandoned run may still be going.
      expect(failed.attemptsMade).toBe(1);
      // Concurrency 1, and the abandoned run is still pending: the slot was freed all the same.
      await waitForJobState(progress(), next.id!, 'completed');
      expect(runs).toBe(2);
      expect(await counter(metrics, { status: 'failed' })).toBe(1);
    } finally {
      release();
    }
  });
});

describe('the hard limit and a transactional handler (real PostgreSQL)', () => {
  let database: TestDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    database = await createTestDatabase('runner');
    pool = new pg.Pool({ connectionString: database.url, max: 4 });
    // A handler the hard limit abandoned may still hold a connection when the database is dropped
    // WITH (FORCE) at the end: that session's termination (57P01) is expected, not a failure.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    await pool.query(`CREATE TABLE gate (id int PRIMARY KEY);
      INSERT INTO gate VALUES (1);
      CREATE TABLE effects (enrollment_id uuid PRIMARY KEY, applied_by_attempt int NOT NULL)`);
  });

  afterEach(async () => {
    await pool.query('TRUNCATE effects');
  });

  afterAll(async () => {
    await pool?.end();
    await database?.drop();
  });

  /** Holds the gate row locked from a connection of the test's own; returns its release. */
  async function holdGate(): Promise<() => Promise<void>> {
    const client = await pool.connect();
    await client.query('BEGIN');
    await client.query('SELECT 1 FROM gate WHERE id = 1 FOR UPDATE');
    return async () => {
      await client.query('COMMIT');
      client.release();
    };
  }

  /**
   * Idempotent and transactional: its one effect is an upsert, committed with the lock it waits
   * for. It leaves its signal out, as a statement the soft limit cannot cancel (a frozen database
   * answers no cancel either), so while the test holds the gate it runs into the hard limit.
   */
  function gatedHandler(finished: number[]): JobHandler<'progress.recompute'> {
    return async ({ enrollmentId }, ctx) => {
      await withTransaction(pool, async (client) => {
        await client.query('SELECT 1 FROM gate WHERE id = 1 FOR UPDATE');
        await client.query(
          `INSERT INTO effects (enrollment_id, applied_by_attempt) VALUES ($1, $2)
           ON CONFLICT (enrollment_id) DO NOTHING`,
          [enrollmentId, ctx.attempt],
        );
      });
      finished.push(ctx.attempt);
    };
  }

  async function effects(): Promise<Array<{ enrollment_id: string; applied_by_attempt: number }>> {
    return (await pool.query<{ enrollment_id: string; applied_by_attempt: number }>('SELECT * FROM effects')).rows;
  }

  // A minute of backoff: the retry waits in the delayed set until the test promotes it.
  const jobOptions = { attempts: 3, backoff: { type: 'fixed', delay: 60_000 } };

  it('retries a job declared transactional and idempotent after the hard limit, with backoff; its effect exists once', async () => {
    const finished: number[] = [];
    const { metrics } = start(
      { 'progress.recompute': gatedHandler(finished) },
      { softMs: 200, hardMs: 700 },
      {
        'progress.recompute': true,
      },
    );
    const release = await holdGate();
    let jobId: string;
    try {
      jobId = (await progress().add('progress.recompute', { enrollmentId: ENROLLMENT }, jobOptions)).id!;
      const delayed = await waitForJobState(progress(), jobId, 'delayed');
      expect(delayed.failedReason).toBe('progress.recompute exceeded the hard time limit of 0.7 s');
      expect(delayed.attemptsMade).toBe(1);
      expect(await counter(metrics, { status: 'retried' })).toBe(1);
      expect(await effects()).toEqual([]);
    } finally {
      await release();
    }
    // The abandoned run was still waiting on the lock: it goes on now and commits.
    await eventually(() => Promise.resolve(finished.includes(1)));
    await (await progress().getJob(jobId))!.promote();
    const done = await waitForJobState(progress(), jobId, 'completed');
    expect(done.attemptsMade).toBe(2);
    expect(finished).toEqual([1, 2]);
    // The retry found the abandoned run's commit: one effect, not two.
    expect(await effects()).toEqual([{ enrollment_id: ENROLLMENT, applied_by_attempt: 1 }]);
    expect(await counter(metrics, { status: 'completed' })).toBe(1);
    expect(await counter(metrics, { status: 'failed' })).toBe(0);
  });

  it('fails a job not declared so for good at the hard limit, whatever its attempts', async () => {
    const finished: number[] = [];
    const { metrics } = start({ 'progress.recompute': gatedHandler(finished) }, { softMs: 200, hardMs: 700 });
    const release = await holdGate();
    try {
      const job = await progress().add('progress.recompute', { enrollmentId: ENROLLMENT }, jobOptions);
      const failed = await waitForJobState(progress(), job.id!, 'failed');
      expect(failed.failedReason).toBe('progress.recompute exceeded the hard time limit of 0.7 s');
      expect(failed.attemptsMade).toBe(1);
      expect(await counter(metrics, { status: 'failed' })).toBe(1);
      expect(await counter(metrics, { status: 'retried' })).toBe(0);
    } finally {
      await release();
    }
    // Why only declared jobs are retried: the abandoned run is not dead, it carries on.
    await eventually(() => Promise.resolve(finished.includes(1)));
    expect(await effects()).toEqual([{ enrollment_id: ENROLLMENT, applied_by_attempt: 1 }]);
  });
});
