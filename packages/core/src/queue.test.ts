import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, createPool } from './db.js';
import { loadConfig } from './config.js';
import { defaultMigrationsDir } from './migrations/migration-files.js';
import { Migrator } from './migrations/migrator.js';
import { defaultJobOptions, jobIdFor, JobProducer, queueJobOptions } from './queue.js';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from './testing/index.js';
import { publishWebhookEvent } from './webhook-events.js';
import { hashPassword, verifyPassword } from './passwords.js';

let database: TestDatabase;
let producer: JobProducer;

beforeAll(async () => {
  database = await createTestDatabase('queue');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  producer = new JobProducer({
    redisUrl: testRedisUrl,
    prefix: testRedisPrefix('queue'),
    defaults: defaultJobOptions(loadConfig({})),
  });
});

afterAll(async () => {
  for (const name of ['emails', 'progress', 'certificates', 'webhooks'] as const)
    await producer.queue(name).obliterate({ force: true });
  await producer.close();
  await database.drop();
});

describe('JobProducer', () => {
  it('queues a job on the queue of its name with the default retry policy', async () => {
    const enrollmentId = '00000000-0000-4000-8000-000000000001';
    const id = await producer.enqueue('progress.recompute', { enrollmentId });
    const job = await producer.queue('progress').getJob(id);
    expect(job).toMatchObject({ name: 'progress.recompute', data: { enrollmentId } });
    expect(job!.opts).toMatchObject({ attempts: 5, backoff: { type: 'exponential', delay: 2000 } });
  });

  it('gives webhook deliveries more attempts than JOB_ATTEMPTS, never fewer', async () => {
    const id = await producer.enqueue('webhook.deliver', {
      subscriptionId: '00000000-0000-4000-8000-000000000002',
      eventId: '00000000-0000-4000-8000-000000000003',
    });
    const job = (await producer.queue('webhooks').getJob(id))!;
    expect(job.opts.attempts).toBe(10);
    await job.remove();
    expect(queueJobOptions('webhooks', { attempts: 20 }).attempts).toBe(20);
    expect(queueJobOptions('emails', { attempts: 5 }).attempts).toBe(5);
  });

  it('refuses a payload that breaks its schema before touching Redis', async () => {
    await expect(
      producer.enqueue('email.send', { to: 'nobody', template: 'welcome', props: {}, idempotencyKey: 'k' }),
    ).rejects.toThrow(/email/i);
    expect(await producer.queue('emails').count()).toBe(0);
    const queued = await producer.queue('progress').count();
    await expect(producer.enqueue('progress.recompute', { enrollmentId: 'e-1' })).rejects.toThrow(/must be a UUID/);
    expect(await producer.queue('progress').count()).toBe(queued);
  });

  it('queues a job with a given id only once', async () => {
    const enrollmentId = '00000000-0000-4000-8000-000000000007';
    const jobId = jobIdFor('certificate.render', enrollmentId);
    expect(jobId).toBe(`certificate-render-${enrollmentId}`);
    await producer.enqueue('certificate.render', { enrollmentId }, { jobId });
    await producer.enqueue('certificate.render', { enrollmentId }, { jobId });
    expect(await producer.queue('certificates').count()).toBe(1);
  });
});

describe('publishWebhookEvent', () => {
  it('records the event and queues one delivery per active subscription to its type, through the outbox', async () => {
    const client = await connectClient(database.url);
    try {
      await client.query(`INSERT INTO webhook_subscriptions (url, events, secret, active) VALUES
        ('https://a.example/hook', '{enrollment.created,course.completed}', 's1', true),
        ('https://b.example/hook', '{enrollment.created}', 's2', false),
        ('https://c.example/hook', '{certificate.issued}', 's3', true)`);
    } finally {
      await client.end();
    }
    const pool = createPool({
      connectionString: database.url,
      config: loadConfig({ DB_POOL_SIZE: '1' }),
      applicationName: 'test',
    });
    try {
      const result = await publishWebhookEvent(pool, 'enrollment.created', { enrollmentId: 'x' });
      expect(result.deliveries).toBe(1);
      const { rows } = await pool.query<{ type: string; payload: unknown }>('SELECT type, payload FROM webhook_events');
      expect(rows).toEqual([{ type: 'enrollment.created', payload: { enrollmentId: 'x' } }]);
      const outbox = await pool.query<{ job_name: string; payload: unknown; job_id: string; sent_at: Date | null }>(
        'SELECT job_name, payload, job_id, sent_at FROM outbox',
      );
      const subscriptionId = (
        await pool.query<{ id: string }>(`SELECT id FROM webhook_subscriptions WHERE url = 'https://a.example/hook'`)
      ).rows[0]!.id;
      expect(outbox.rows).toEqual([
        {
          job_name: 'webhook.deliver',
          payload: { subscriptionId, eventId: result.eventId },
          job_id: jobIdFor('webhook.deliver', subscriptionId, result.eventId),
          sent_at: null,
        },
      ]);
    } finally {
      await pool.end();
    }
  });
});

describe('passwords', () => {
  it('hashes with argon2id and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse battery');
    expect(hash).toMatch(/^\$argon2id\$/);
    expect(await verifyPassword(hash, 'correct horse battery')).toBe(true);
    expect(await verifyPassword(hash, 'wrong horse battery')).toBe(false);
    expect(await verifyPassword('not-a-hash', 'x')).toBe(false);
  });
});
