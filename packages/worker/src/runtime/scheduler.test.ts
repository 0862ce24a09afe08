import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { periodicJobNames, queueJob, queueOf } from '@lms/core';
import { defaultJobOptions, JobProducer } from '@lms/core/queue';
import { testRedisUrl } from '@lms/core/testing';
import { createCleanupHandler } from '../maintenance/cleanup.handler.js';
import { insertSubscription, insertUser } from '../testing/factories.js';
import {
  createWorkerTestEnv,
  eventually,
  handlerContext,
  silentLogger,
  waitForJobState,
  type WorkerTestEnv,
} from '../testing/worker-harness.js';
import { createWorkerMetrics } from './metrics.js';
import { periodicSchedules, registerJobSchedulers, schedulerIdFor, startScheduler } from './scheduler.js';

let env: WorkerTestEnv;

beforeAll(async () => {
  env = await createWorkerTestEnv('scheduler');
});

afterAll(async () => {
  await env.cleanup();
});

describe('the scheduler', () => {
  it('registers one job scheduler per periodic job however many instances start', async () => {
    const options = defaultJobOptions(env.config());
    // Three scheduler instances (e.g. replicas of the scheduler service) starting together.
    const others = [1, 2].map(
      () => new JobProducer({ redisUrl: testRedisUrl, prefix: env.queuePrefix, defaults: options }),
    );
    try {
      await Promise.all([env.producer, ...others].map((producer) => registerJobSchedulers(producer, options)));
    } finally {
      await Promise.all(others.map((producer) => producer.close()));
    }
    for (const name of periodicJobNames) {
      const queue = env.queue(queueOf[name]);
      const schedulers = await queue.getJobSchedulers();
      expect(schedulers.filter((scheduler) => scheduler.key === schedulerIdFor(name))).toEqual([
        expect.objectContaining({ name, pattern: periodicSchedules[name].pattern, tz: 'UTC' }),
      ]);
      // Exactly one upcoming run, whatever the number of instances.
      const delayed = (await queue.getJobs(['delayed'])).filter((job) => job.name === name);
      expect(delayed).toHaveLength(1);
      expect(delayed[0]!.opts).toMatchObject({ attempts: 3, backoff: { type: 'exponential', delay: 2000 } });
    }
  });

  it('samples the queue depths into lms_queue_jobs and the outbox backlog into lms_outbox_*', async () => {
    await queueJob(env.db, 'progress.recompute', { enrollmentId: '00000000-0000-4000-8000-000000000005' }, 'unsent');
    await env.producer.enqueue('progress.recompute', { enrollmentId: '00000000-0000-4000-8000-000000000002' });
    await env.producer.enqueue('webhook.deliver', {
      subscriptionId: '00000000-0000-4000-8000-000000000003',
      eventId: '00000000-0000-4000-8000-000000000004',
    });
    const metrics = createWorkerMetrics({ defaultMetrics: false });
    const scheduler = await startScheduler({
      producer: env.producer,
      pool: env.db,
      jobOptions: defaultJobOptions(env.config()),
      metrics,
      logger: silentLogger,
      sampleIntervalMs: 100,
    });
    try {
      const text = await eventually(async () => {
        const output = await metrics.registry.metrics();
        return output.includes('lms_queue_jobs{queue="progress",state="waiting"} 1') && output;
      });
      expect(text).toContain('lms_queue_jobs{queue="webhooks",state="waiting"} 1');
      // The periodic jobs wait, delayed, for their next run.
      expect(text).toContain('lms_queue_jobs{queue="certificates",state="delayed"} 1');
      expect(text).toContain('lms_queue_jobs{queue="emails",state="active"} 0');
      const outbox = await eventually(async () => {
        const output = await metrics.registry.metrics();
        return output.includes('lms_outbox_depth 1') && output;
      });
      expect(outbox).toMatch(/lms_outbox_oldest_age_seconds \d/);
    } finally {
      await scheduler.stop();
      await env.db.query('DELETE FROM outbox');
    }
  });
});

describe('maintenance.cleanup', () => {
  it('deletes expired refresh tokens, webhook deliveries and relayed outbox rows past their retention, idempotently', async () => {
    const user = await insertUser(env.db);
    await env.db.query(
      `INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
       VALUES ($1, gen_random_uuid(), 'expired', now() - interval '1 hour'),
              ($1, gen_random_uuid(), 'valid', now() + interval '1 day')`,
      [user.id],
    );
    const subscriptionId = await insertSubscription(env.db, {
      url: 'https://a.example/h',
      events: ['course.completed'],
      secret: 's',
    });
    const { rows } = await env.db.query<{ id: string }>(
      `INSERT INTO webhook_events (type, payload) VALUES ('course.completed', '{}') RETURNING id`,
    );
    await env.db.query(
      `INSERT INTO webhook_deliveries (subscription_id, event_id, attempt, status, duration_ms, created_at)
       VALUES ($1, $2, 1, 'failed', 5, now() - interval '40 days'), ($1, $2, 2, 'succeeded', 5, now() - interval '1 day')`,
      [subscriptionId, rows[0]!.id],
    );
    await env.db.query('DELETE FROM outbox');
    await env.db.query(
      `INSERT INTO outbox (job_name, payload, job_id, created_at, sent_at) VALUES
         ('maintenance.cleanup', '{}', 'sent-long-ago', now() - interval '9 days', now() - interval '8 days'),
         ('maintenance.cleanup', '{}', 'sent-yesterday', now() - interval '1 day', now() - interval '1 day'),
         ('maintenance.cleanup', '{}', 'never-sent', now() - interval '9 days', NULL)`,
    );
    const handler = createCleanupHandler({
      pool: env.db,
      queue: (name) => env.queue(name),
      config: { FAILED_JOB_RETENTION_HOURS: 1 },
    });
    await handler({}, handlerContext());
    await handler({}, handlerContext());
    const tokens = await env.db.query<{ token_hash: string }>('SELECT token_hash FROM refresh_tokens');
    expect(tokens.rows.map((row) => row.token_hash)).toEqual(['valid']);
    const deliveries = await env.db.query<{ attempt: number }>('SELECT attempt FROM webhook_deliveries');
    expect(deliveries.rows.map((row) => row.attempt)).toEqual([2]);
    const outbox = await env.db.query<{ job_id: string }>('SELECT job_id FROM outbox ORDER BY id');
    expect(outbox.rows.map((row) => row.job_id)).toEqual(['sent-yesterday', 'never-sent']);
    // Not for the next test's worker to relay.
    await env.db.query('DELETE FROM outbox');
  });

  it('runs as a job on the certificates queue, and trims failed jobs past their retention', async () => {
    const worker = await env.startWorker({ queues: ['certificates'] });
    try {
      const id = await env.producer.enqueue('maintenance.cleanup', {});
      await waitForJobState(env.queue('certificates'), id, 'completed');
      const broken = await env.queue('certificates').add('certificate.shred', {});
      await waitForJobState(env.queue('certificates'), broken.id!, 'failed');
    } finally {
      await worker.shutdown();
    }
    const handler = createCleanupHandler({
      pool: env.db,
      queue: (name) => env.queue(name),
      config: { FAILED_JOB_RETENTION_HOURS: 0 },
    });
    await handler({}, handlerContext());
    expect(await env.queue('certificates').getJobCounts('failed', 'completed')).toEqual({ failed: 0, completed: 1 });
  });
});
