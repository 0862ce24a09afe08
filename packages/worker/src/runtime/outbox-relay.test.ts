import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueJob, queueNames, redisConnectionOptions, type QueueName } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import { call, createCourse, createTestApi, createUser, type TestApi } from '../../../api/src/testing/test-app.js';
import { insertSubscription } from '../testing/factories.js';
import { ownRedis, type OwnRedis } from '../testing/redis-server.js';
import { startSmtpSink, type SmtpSink } from '../testing/smtp-sink.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import { createWorkerTestEnv, eventually, silentLogger, type WorkerTestEnv } from '../testing/worker-harness.js';
import { relayOutboxOnce } from './outbox-relay.js';
import { startWorkerProcess, type WorkerProcess } from './worker-process.js';

const SECRET = 'whsec-outbox';

describe('a Redis outage', () => {
  let redis: OwnRedis;
  let sink: SmtpSink;
  let receiver: WebhookReceiver;
  let api: TestApi;
  let worker: WorkerProcess | undefined;
  let queues: Queue[] = [];

  beforeAll(async () => {
    redis = await ownRedis();
    sink = await startSmtpSink();
    receiver = await startWebhookReceiver(SECRET);
    api = await createTestApi({ REDIS_URL: redis.url });
  });

  afterAll(async () => {
    // Closing BullMQ connections waits for a Redis that answers.
    await redis?.start();
    await Promise.all(queues.map((queue) => queue.close()));
    await worker?.shutdown({ force: true });
    await api?.close();
    await receiver?.close();
    await sink?.close();
    await redis?.kill();
  });

  /** Jobs not finished yet in any queue of the app's Redis. */
  async function pendingJobs(): Promise<number> {
    let pending = 0;
    for (const queue of queues) {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      pending += Object.values(counts).reduce((sum, count) => sum + count, 0);
    }
    return pending;
  }

  async function unsent(): Promise<number> {
    const { rows } = await api.db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL');
    return rows[0]!.n;
  }

  it('delays the jobs of requests made meanwhile and runs each once when Redis is back', async () => {
    worker = await startWorkerProcess({
      config: api.env.config({
        REDIS_URL: redis.url,
        SMTP_URL: sink.url,
        WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
        DB_POOL_SIZE: '2',
      }),
      logger: silentLogger,
      queues: queueNames,
      scheduler: false,
      metricsPort: 0,
      recovery: { lockDurationMs: 5000, stalledIntervalMs: 1000 },
      outboxRelayIntervalMs: 100,
    });
    queues = queueNames.map((name: QueueName) => {
      const queue = new Queue(name, { connection: redisConnectionOptions(redis.url), prefix: api.config.QUEUE_PREFIX });
      // Refused connections during the outage are expected; the assertions look at the effects.
      queue.on('error', () => undefined);
      return queue;
    });
    await insertSubscription(api.db, {
      url: receiver.url,
      events: ['enrollment.created', 'lesson.completed', 'course.completed', 'certificate.issued'],
      secret: SECRET,
    });
    const instructor = await createUser(api, 'instructor');
    const learner = await createUser(api, 'student', { name: 'Ada' });
    const course = await createCourse(api, instructor, { title: 'Engines', lessons: 2 });
    const enrolled = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token });
    expect(enrolled.status).toBe(201);
    const enrollmentId = enrolled.body.id as string;
    // Everything queued before the outage has run: a Redis without persistence forgets its jobs.
    await sink.waitForMessages(1);
    await receiver.waitForRequests(1);
    await eventually(async () => (await unsent()) === 0 && (await pendingJobs()) === 0);

    await redis.kill();
    for (const lessonId of course.lessonIds) {
      const completed = await call(api, 'post', `/api/v1/enrollments/${enrollmentId}/lessons/${lessonId}/complete`, {
        token: learner.token,
      });
      expect(completed.status).toBe(200);
    }
    const registered: string[] = [];
    for (let n = 1; n <= 12; n++) {
      const response = await call(api, 'post', '/api/v1/auth/register', {
        body: { email: `outage-${n}@example.com`, password: 'correct horse battery staple', name: `Learner ${n}` },
      });
      expect(response.status).toBe(201);
      registered.push(response.body.user.id as string);
    }
    // 2 recomputes, 2 lesson.completed deliveries, 12 welcome e-mails: all kept, the relay failing on them.
    expect(await unsent()).toBe(16);
    await eventually(async () => {
      const { rows } = await api.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL AND attempts > 0 AND last_error IS NOT NULL`,
      );
      return rows[0]!.n > 0;
    });

    await redis.start();
    await eventually(async () => {
      const { rows } = await api.db.query<{ status: string }>('SELECT status FROM enrollments WHERE id = $1', [
        enrollmentId,
      ]);
      return rows[0]!.status === 'completed';
    }, 60_000);
    await eventually(async () => {
      const { rows } = await api.db.query('SELECT 1 FROM certificates WHERE enrollment_id = $1', [enrollmentId]);
      return rows.length === 1;
    }, 60_000);
    // enrolment confirmation, 12 welcomes, course completed, certificate issued
    await sink.waitForMessages(15, 60_000);
    // enrollment.created, 2 × lesson.completed, course.completed, certificate.issued
    await receiver.waitForRequests(5, 60_000);
    await eventually(async () => (await unsent()) === 0 && (await pendingJobs()) === 0, 60_000);

    const keys = sink.messages.map((message) => message.headers['x-lms-idempotency-key']);
    expect(keys.toSorted()).toEqual(
      [
        `enrollment-confirmation-${enrollmentId}`,
        `course-completed-${enrollmentId}`,
        `certificate-issued-${enrollmentId}`,
        ...registered.map((id) => `welcome-${id}`),
      ].toSorted(),
    );
    const events = receiver.requests.map((request) => (request.json as { type: string }).type);
    expect(events.toSorted()).toEqual(
      [
        'enrollment.created',
        'lesson.completed',
        'lesson.completed',
        'course.completed',
        'certificate.issued',
      ].toSorted(),
    );
    expect(new Set(receiver.requests.map((request) => request.headers['x-lms-delivery'])).size).toBe(5);
    expect(receiver.requests.every((request) => request.signatureValid)).toBe(true);
    const recomputes = await queues[queueNames.indexOf('progress')]!.getJobs(['completed', 'failed']);
    expect(recomputes.filter((job) => job.name === 'progress.recompute').map((job) => job.failedReason)).toEqual([
      undefined,
      undefined,
    ]);
  });
});

describe('the relay', () => {
  let env: WorkerTestEnv;

  beforeAll(async () => {
    env = await createWorkerTestEnv('outbox-relay');
  });

  afterAll(async () => {
    await env.cleanup();
  });

  it('hands each row to one of several relays, and a row relayed again is still one job', async () => {
    const enrollmentId = '00000000-0000-4000-8000-000000000001';
    for (let n = 0; n < 250; n++) {
      await queueJob(env.db, 'certificate.render', { enrollmentId }, jobIdFor('certificate.render', `relay-${n}`));
    }
    const passes = await Promise.all(
      [1, 2, 3].map(() => relayOutboxOnce({ pool: env.db, producer: env.producer, batchSize: 100 })),
    );
    expect(passes.every((pass) => !pass.redisFailed && pass.refused.length === 0)).toBe(true);
    const sentByPasses = passes.reduce((sum, pass) => sum + pass.sent, 0);
    // Each pass took rows the others did not hold; what they left is relayed by the next passes.
    let sent = sentByPasses;
    while (sent < 250) sent += (await relayOutboxOnce({ pool: env.db, producer: env.producer })).sent;
    expect(sent).toBe(250);
    const queue = env.queue('certificates');
    expect(await queue.count()).toBe(250);

    // As if a relay died after adding the jobs and before marking them sent.
    await env.db.query('UPDATE outbox SET sent_at = NULL');
    expect((await relayOutboxOnce({ pool: env.db, producer: env.producer, batchSize: 300 })).sent).toBe(250);
    expect(await queue.count()).toBe(250);
    const { rows } = await env.db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL');
    expect(rows[0]!.n).toBe(0);
    await queue.drain();
  });

  it('keeps the rows this release refuses, with the reason, and they never hold up the others', async () => {
    await env.db.query('DELETE FROM outbox');
    await env.db.query(
      `INSERT INTO outbox (job_name, payload, job_id) VALUES
         ('progress.recompute', '{"enrollmentId":"e-1"}', 'bad-payload'),
         ('report.render', '{}', 'unknown-job')`,
    );
    await queueJob(env.db, 'progress.recompute', { enrollmentId: '00000000-0000-4000-8000-000000000002' }, 'good');
    // A batch full of refused rows...
    const first = await relayOutboxOnce({ pool: env.db, producer: env.producer, batchSize: 2 });
    expect(first).toEqual({
      sent: 0,
      refused: [
        {
          id: expect.any(String),
          jobName: 'progress.recompute',
          jobId: 'bad-payload',
          reason: 'invalid payload for progress.recompute: enrollmentId: must be a UUID',
        },
        {
          id: expect.any(String),
          jobName: 'report.render',
          jobId: 'unknown-job',
          reason: 'unknown job name report.render: this release cannot queue it',
        },
      ],
      redisFailed: false,
      full: true,
    });
    // ...and the next pass, skipping them, relays what comes after.
    const second = await relayOutboxOnce({
      pool: env.db,
      producer: env.producer,
      batchSize: 2,
      skip: first.refused.map((row) => row.id),
    });
    expect(second).toEqual({ sent: 1, refused: [], redisFailed: false, full: false });
    const { rows } = await env.db.query<{ job_id: string; sent: boolean; attempts: number; last_error: string | null }>(
      'SELECT job_id, sent_at IS NOT NULL AS sent, attempts, last_error FROM outbox ORDER BY id',
    );
    expect(rows).toEqual([
      {
        job_id: 'bad-payload',
        sent: false,
        attempts: 1,
        last_error: 'invalid payload for progress.recompute: enrollmentId: must be a UUID',
      },
      {
        job_id: 'unknown-job',
        sent: false,
        attempts: 1,
        last_error: 'unknown job name report.render: this release cannot queue it',
      },
      { job_id: 'good', sent: true, attempts: 0, last_error: null },
    ]);
    expect(await env.queue('progress').getJob('good')).toMatchObject({
      name: 'progress.recompute',
      data: { enrollmentId: '00000000-0000-4000-8000-000000000002' },
    });
    await env.queue('progress').drain();
  });
});
