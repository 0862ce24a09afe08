import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, UnknownSecretKeyError, webhookSecretBox, webhookSecretContext, type SecretBox } from '@lms/core';
import { publishWebhookEvent } from '@lms/core/webhook-events';
import type { WorkerProcess } from '../runtime/worker-process.js';
import { insertSubscription } from '../testing/factories.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import { createWorkerTestEnv, handlerContext, waitForJobState, type WorkerTestEnv } from '../testing/worker-harness.js';
import { createWebhookHandler } from './webhook.handler.js';
import { deliveryId, signatureHeader, verifySignatureHeader } from './webhook-signature.js';

const SECRET = 'whsec_test_secret';
let env: WorkerTestEnv;
let receiver: WebhookReceiver;
let worker: WorkerProcess;
const workerEnv = { WEBHOOK_MAX_CONSECUTIVE_FAILURES: '4', WEBHOOK_TIMEOUT_SECONDS: '1' };
const config = (overrides: Record<string, string> = {}) => env.config({ ...workerEnv, ...overrides });

beforeAll(async () => {
  env = await createWorkerTestEnv('webhooks');
  receiver = await startWebhookReceiver(SECRET);
  worker = await env.startWorker({ queues: ['webhooks'], env: workerEnv });
});

afterAll(async () => {
  await env.cleanup();
  await receiver.close();
});

beforeEach(async () => {
  // One subscription per test: no event fans out to an earlier test's subscription.
  await env.db.query('UPDATE webhook_subscriptions SET active = false');
  receiver.requests.length = 0;
  receiver.delayMs = 0;
});

async function publish(payload: Record<string, unknown> = { enrollmentId: 'e' }) {
  const { eventId } = await publishWebhookEvent(env.db, 'course.completed', payload);
  return eventId;
}

function jobId(subscriptionId: string, eventId: string) {
  return `webhook-deliver-${subscriptionId}-${eventId}`;
}

async function deliveries(subscriptionId: string) {
  const { rows } = await env.db.query<{
    attempt: number;
    status: string;
    response_status: number | null;
    duration_ms: number;
    error: string | null;
  }>(
    `SELECT attempt, status, response_status, duration_ms, error FROM webhook_deliveries
      WHERE subscription_id = $1 ORDER BY attempt`,
    [subscriptionId],
  );
  return rows;
}

async function subscription(id: string) {
  const { rows } = await env.db.query<{
    active: boolean;
    consecutive_failures: number;
    disabled_at: Date | null;
    disabled_reason: string | null;
  }>('SELECT active, consecutive_failures, disabled_at, disabled_reason FROM webhook_subscriptions WHERE id = $1', [
    id,
  ]);
  return rows[0]!;
}

/** Moves a delayed retry forward instead of waiting out its backoff. */
async function promote(id: string) {
  await waitForJobState(env.queue('webhooks'), id, 'delayed');
  await (await env.queue('webhooks').getJob(id))!.promote();
}

describe('webhook.deliver', () => {
  it('POSTs the signed event JSON, which the receiver verifies, and records the attempt', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    const eventId = await publish({ enrollmentId: 'enr-1', courseId: 'c-1' });
    await waitForJobState(env.queue('webhooks'), jobId(subscriptionId, eventId), 'completed');

    const [request, ...more] = receiver.requests;
    expect(more).toEqual([]);
    expect(request!.signatureValid).toBe(true);
    expect(request!.headers).toMatchObject({
      'content-type': 'application/json',
      'x-lms-event': 'course.completed',
      'x-lms-delivery': deliveryId(subscriptionId, eventId),
      'x-lms-signature': expect.stringMatching(/^t=\d+,v1=[0-9a-f]{64}$/),
    });
    expect(request!.json).toEqual({
      id: eventId,
      type: 'course.completed',
      createdAt: expect.any(String),
      data: { enrollmentId: 'enr-1', courseId: 'c-1' },
    });
    expect(await deliveries(subscriptionId)).toEqual([
      { attempt: 1, status: 'succeeded', response_status: 200, duration_ms: expect.any(Number), error: null },
    ]);

    // Run again (a crash after the POST, before the acknowledgement): nothing is sent twice.
    const handler = createWebhookHandler({ pool: worker.pool, config: config() });
    await handler({ subscriptionId, eventId }, handlerContext());
    expect(receiver.requests).toHaveLength(1);
    expect(await deliveries(subscriptionId)).toHaveLength(1);
  });

  it('retries 5xx and 429 with backoff, records every attempt, and resets the failure streak on success', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    receiver.respondWith(503, 429);
    const eventId = await publish();
    const id = jobId(subscriptionId, eventId);
    await promote(id);
    await promote(id);
    await waitForJobState(env.queue('webhooks'), id, 'completed');
    expect((await deliveries(subscriptionId)).map((row) => [row.attempt, row.status, row.response_status])).toEqual([
      [1, 'failed', 503],
      [2, 'failed', 429],
      [3, 'succeeded', 200],
    ]);
    expect((await deliveries(subscriptionId))[0]!.error).toBe('receiver answered HTTP 503');
    expect(await subscription(subscriptionId)).toMatchObject({ active: true, consecutive_failures: 0 });
    // Every attempt carries the same delivery id, so the receiver can drop repeats.
    expect(new Set(receiver.requests.map((request) => request.headers['x-lms-delivery'])).size).toBe(1);
  });

  it('does not retry a 4xx other than 408/429', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    receiver.respondWith(410);
    const eventId = await publish();
    const failed = await waitForJobState(env.queue('webhooks'), jobId(subscriptionId, eventId), 'failed');
    expect(failed.failedReason).toBe('receiver answered HTTP 410 (not retried)');
    expect(failed.attemptsMade).toBe(1);
    expect(await subscription(subscriptionId)).toMatchObject({ active: true, consecutive_failures: 1 });
  });

  it('times out a receiver that does not answer and retries', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    receiver.delayMs = 3000;
    const eventId = await publish();
    const id = jobId(subscriptionId, eventId);
    await waitForJobState(env.queue('webhooks'), id, 'delayed');
    const [attempt] = await deliveries(subscriptionId);
    expect(attempt).toMatchObject({
      attempt: 1,
      status: 'failed',
      response_status: null,
      error: 'no response within 1 s',
    });
    expect(attempt!.duration_ms).toBeGreaterThanOrEqual(950);
    expect(attempt!.duration_ms).toBeLessThan(2500);
  });

  it('disables the subscription after N consecutive failures and says why', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
      consecutiveFailures: 2,
    });
    receiver.respondWith(500, 500);
    const eventId = await publish();
    const id = jobId(subscriptionId, eventId);
    await promote(id);
    const failed = await waitForJobState(env.queue('webhooks'), id, 'failed');
    expect(failed.failedReason).toBe(
      'receiver answered HTTP 500; the subscription is disabled after 4 consecutive failed deliveries',
    );
    expect(await subscription(subscriptionId)).toMatchObject({
      active: false,
      consecutive_failures: 4,
      disabled_at: expect.any(Date),
      disabled_reason: 'disabled after 4 consecutive failed deliveries; last: receiver answered HTTP 500',
    });
    // A disabled subscription gets nothing more.
    const next = await publish();
    expect(receiver.requests).toHaveLength(2);
    const handler = createWebhookHandler({ pool: worker.pool, config: config() });
    await handler({ subscriptionId, eventId: next }, handlerContext());
    expect(receiver.requests).toHaveLength(2);
  });

  it('refuses loopback targets when private targets are not allowed: recorded, never retried', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    const byName = await insertSubscription(env.db, {
      url: receiver.url.replace('127.0.0.1', 'localhost'),
      events: ['course.completed'],
      secret: SECRET,
    });
    // Recorded without queueing deliveries: the running worker (which allows private targets) stays out of it.
    const { rows } = await env.db.query<{ id: string }>(
      `INSERT INTO webhook_events (type, payload) VALUES ('course.completed', '{}') RETURNING id`,
    );
    const eventId = rows[0]!.id;
    const strict = createWebhookHandler({
      pool: worker.pool,
      config: config({ WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false' }),
    });
    await expect(strict({ subscriptionId, eventId }, handlerContext())).rejects.toMatchObject({
      name: 'UnrecoverableError',
      message: expect.stringMatching(
        /^refused webhook target 127\.0\.0\.1: 127\.0\.0\.1 is a loopback.* \(not retried\)$/,
      ),
    });
    // A host name is resolved first, and every address it resolves to is checked.
    await expect(strict({ subscriptionId: byName, eventId }, handlerContext())).rejects.toThrow(
      /refused webhook target localhost: (127\.0\.0\.1|::1) is a loopback/,
    );
    expect(receiver.requests).toEqual([]);
    expect(await deliveries(subscriptionId)).toEqual([
      {
        attempt: 1,
        status: 'failed',
        response_status: null,
        duration_ms: expect.any(Number),
        error: expect.stringMatching(/^refused webhook target 127\.0\.0\.1/),
      },
    ]);
    expect(await subscription(subscriptionId)).toMatchObject({ active: true, consecutive_failures: 1 });
  });

  it('waits for an event whose publisher has not committed yet (a delivery queued past the outbox)', async () => {
    const subscriptionId = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['course.completed'],
      secret: SECRET,
    });
    const client = await env.db.connect();
    try {
      await client.query('BEGIN');
      const { eventId } = await publishWebhookEvent(client, 'course.completed', { late: true });
      // As an older release queued it: straight to the queue, before the event committed.
      await env.producer.enqueue(
        'webhook.deliver',
        { subscriptionId, eventId },
        { jobId: jobId(subscriptionId, eventId) },
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await client.query('COMMIT');
      await waitForJobState(env.queue('webhooks'), jobId(subscriptionId, eventId), 'completed');
      expect(await deliveries(subscriptionId)).toHaveLength(1);
    } finally {
      client.release();
    }
  });
});

describe('webhook.deliver with secrets encrypted at rest', () => {
  const KEY = 'a1'.repeat(32);
  const OTHER_KEY = 'b2'.repeat(32);
  const box = webhookSecretBox({ WEBHOOK_SECRET_KEY: KEY })!;

  /** A subscription as the API stores it with WEBHOOK_SECRET_KEY set: no plain text in the row. */
  async function insertSealed(sealWith: SecretBox, secret: string): Promise<string> {
    const id = randomUUID();
    const sealed = sealWith.seal(secret, webhookSecretContext(id));
    // Subscribed to another event than the tests publish: only these direct handler runs deliver it.
    await env.db.query(
      `INSERT INTO webhook_subscriptions (id, url, events, secret_ciphertext, secret_key_id) VALUES ($1, $2, $3, $4, $5)`,
      [id, receiver.url, ['certificate.issued'], sealed.ciphertext, sealed.keyId],
    );
    return id;
  }

  function capturingLog() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    return { lines, log: createLogger({ level: 'info', destination }) };
  }

  it('signs with the decrypted secret: the receiver verifies it with the original', async () => {
    const subscriptionId = await insertSealed(box, SECRET);
    const eventId = await publish({ sealed: true });
    const handler = createWebhookHandler({ pool: worker.pool, config: config({ WEBHOOK_SECRET_KEY: KEY }) });
    await handler({ subscriptionId, eventId }, handlerContext());
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]!.signatureValid).toBe(true);
    const [request] = receiver.requests;
    expect(verifySignatureHeader(String(request!.headers['x-lms-signature']), SECRET, request!.body)).toBe(true);
    expect(await deliveries(subscriptionId)).toMatchObject([{ attempt: 1, status: 'succeeded' }]);
  });

  it('still reads a plain-text secret from before encryption, and says so once per process', async () => {
    const first = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['certificate.issued'],
      secret: SECRET,
    });
    const second = await insertSubscription(env.db, {
      url: receiver.url,
      events: ['certificate.issued'],
      secret: SECRET,
    });
    const eventId = await publish({ legacy: true });
    const { lines, log } = capturingLog();
    const handler = createWebhookHandler({ pool: worker.pool, config: config({ WEBHOOK_SECRET_KEY: KEY }) });
    await handler({ subscriptionId: first, eventId }, handlerContext({ log }));
    await handler({ subscriptionId: second, eventId }, handlerContext({ log }));
    expect(receiver.requests.map((request) => request.signatureValid)).toEqual([true, true]);
    const notes = lines.filter((line) => line.includes('lmsctl webhooks encrypt-secrets'));
    expect(notes).toHaveLength(1);
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('fails an attempt, naming key ids only, when the secret is under a key this process lacks', async () => {
    const other = webhookSecretBox({ WEBHOOK_SECRET_KEY: OTHER_KEY })!;
    const subscriptionId = await insertSealed(other, SECRET);
    const eventId = await publish({ wrongKey: true });
    const wrong = createWebhookHandler({ pool: worker.pool, config: config({ WEBHOOK_SECRET_KEY: KEY }) });
    const failure = await wrong({ subscriptionId, eventId }, handlerContext()).then(
      () => null,
      (error: unknown) => error as Error,
    );
    expect(failure).toBeInstanceOf(UnknownSecretKeyError);
    const message = failure?.message ?? '';
    expect(message).toContain(other.current.id);
    expect(message).toContain(box.current.id);
    for (const secret of [SECRET, KEY, OTHER_KEY]) expect(message).not.toContain(secret);

    const keyless = createWebhookHandler({ pool: worker.pool, config: config() });
    await expect(keyless({ subscriptionId, eventId }, handlerContext())).rejects.toThrow(
      `the signing secret of webhook subscription ${subscriptionId} is encrypted (key id ${other.current.id}) but WEBHOOK_SECRET_KEY is not set`,
    );
    // Nothing was sent, and no attempt counted against the subscription.
    expect(receiver.requests).toEqual([]);
    expect(await deliveries(subscriptionId)).toEqual([]);

    // The rotation's previous key opens it.
    const rotating = createWebhookHandler({
      pool: worker.pool,
      config: config({ WEBHOOK_SECRET_KEY: KEY, WEBHOOK_SECRET_KEY_PREVIOUS: OTHER_KEY }),
    });
    await rotating({ subscriptionId, eventId }, handlerContext());
    expect(receiver.requests.map((request) => request.signatureValid)).toEqual([true]);
  });
});

describe('webhook signatures', () => {
  it('sign "t.body" with HMAC-SHA256 and verify only the same body, secret and a fresh timestamp', () => {
    const now = Math.floor(Date.now() / 1000);
    const header = signatureHeader('s3cret', '{"a":1}', now);
    expect(verifySignatureHeader(header, 's3cret', '{"a":1}')).toBe(true);
    expect(verifySignatureHeader(header, 's3cret', '{"a":2}')).toBe(false);
    expect(verifySignatureHeader(header, 'other', '{"a":1}')).toBe(false);
    expect(verifySignatureHeader(signatureHeader('s3cret', '{"a":1}', now - 3600), 's3cret', '{"a":1}')).toBe(false);
    expect(verifySignatureHeader('garbage', 's3cret', '{"a":1}')).toBe(false);
  });
});
