import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emailTemplates } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import { enroll, insertCourse, insertUser } from '../testing/factories.js';
import { startSmtpSink, type SmtpSink } from '../testing/smtp-sink.js';
import {
  createWorkerTestEnv,
  eventually,
  handlerContext,
  outboxJobs,
  waitForJobState,
  type WorkerTestEnv,
} from '../testing/worker-harness.js';
import type { WorkerProcess } from '../runtime/worker-process.js';
import { SoftTimeLimitError } from '../time-limits.js';
import { createEmailHandler, createInactivityRemindersHandler } from './email.handler.js';
import { createMailer } from './mailer.js';

let env: WorkerTestEnv;
let sink: SmtpSink;
let worker: WorkerProcess;

beforeAll(async () => {
  env = await createWorkerTestEnv('emails');
  sink = await startSmtpSink();
  worker = await env.startWorker({
    queues: ['emails'],
    env: { SMTP_URL: sink.url, SMTP_FROM: 'LMS <no-reply@lms.test>', APP_DOMAIN: 'lms.test' },
  });
});

afterAll(async () => {
  await env.cleanup();
  await sink.close();
});

const emails = () => env.queue('emails');

async function send(key: string, template: (typeof emailTemplates)[number], props: Record<string, unknown>) {
  const id = await env.producer.enqueue(
    'email.send',
    { to: 'ada@example.com', template, props, idempotencyKey: key },
    { jobId: jobIdFor('email.send', key) },
  );
  return id;
}

async function deliveryRow(key: string) {
  const { rows } = await env.db.query<{
    status: string;
    attempts: number;
    message_id: string | null;
    last_error: string | null;
  }>('SELECT status, attempts, message_id, last_error FROM email_deliveries WHERE idempotency_key = $1', [key]);
  return rows[0];
}

describe('email.send', () => {
  it('delivers every template as text and HTML to the SMTP server', async () => {
    const props = { name: 'Ada <Lovelace>', courseTitle: 'Analytical Engines', code: 'LMS-AAAA-BBBB-CCCC', days: 14 };
    const before = sink.messages.length;
    for (const template of emailTemplates) {
      const id = await send(`all-${template}`, template, props);
      await waitForJobState(emails(), id, 'completed');
    }
    const received = sink.messages.slice(before);
    expect(received.map((message) => message.subject)).toEqual([
      'Welcome to the LMS',
      'You are enrolled in Analytical Engines',
      'You completed Analytical Engines',
      'Your certificate for Analytical Engines',
      'Pick up where you left off in Analytical Engines',
    ]);
    for (const message of received) {
      expect(message.to).toEqual(['ada@example.com']);
      expect(message.from).toBe('no-reply@lms.test');
      expect(message.headers['content-type']).toMatch(/^multipart\/alternative/);
      // Props are escaped in HTML, verbatim in text.
      expect(message.html).toContain('Ada &#60;Lovelace&#62;');
      expect(message.html).not.toContain('<Lovelace>');
      expect(message.text).toContain('Ada <Lovelace>');
    }
    const certificate = received[3]!;
    expect(certificate.text).toContain('Verification code: LMS-AAAA-BBBB-CCCC');
    expect(certificate.text).toContain('https://lms.test/api/v1/certificates/verify/LMS-AAAA-BBBB-CCCC');
    expect(certificate.html).toContain('<a href="https://lms.test/api/v1/certificates/verify/LMS-AAAA-BBBB-CCCC">');
    expect(received[4]!.text).toContain('It has been 14 days since you last worked on "Analytical Engines".');
    expect(certificate.headers['x-lms-idempotency-key']).toBe('all-certificate-issued');
    expect(await deliveryRow('all-welcome')).toMatchObject({
      status: 'sent',
      attempts: 1,
      message_id: expect.any(String),
    });
  });

  it('sends one email per idempotency key however often the job runs', async () => {
    const before = sink.messages.length;
    const first = await send('welcome-user-1', 'welcome', { name: 'Ada' });
    await waitForJobState(emails(), first, 'completed');
    // The same key again under another job id (a producer that retried its enqueue, a redelivery).
    const again = await env.producer.enqueue('email.send', {
      to: 'ada@example.com',
      template: 'welcome',
      props: { name: 'Ada' },
      idempotencyKey: 'welcome-user-1',
    });
    await waitForJobState(emails(), again, 'completed');
    // And the handler itself, twice at once (two workers picking up duplicates).
    const mailer = createMailer({ url: sink.url, from: 'LMS <no-reply@lms.test>' });
    const handler = createEmailHandler({ pool: worker.pool, mailer, config: { APP_DOMAIN: 'lms.test' } });
    const data = { to: 'ada@example.com', template: 'welcome' as const, props: {}, idempotencyKey: 'welcome-user-2' };
    try {
      await Promise.all([handler(data, handlerContext()), handler(data, handlerContext())]);
    } finally {
      mailer.close();
    }
    expect(sink.messages.slice(before).map((message) => message.headers['x-lms-idempotency-key'])).toEqual([
      'welcome-user-1',
      'welcome-user-2',
    ]);
    expect(await deliveryRow('welcome-user-1')).toMatchObject({ status: 'sent', attempts: 1 });
  });

  it('retries a transient SMTP refusal and records the failed attempt', async () => {
    const before = sink.messages.length;
    sink.failNext(1, 451, 'greylisted, try again');
    const id = await env.producer.enqueue(
      'email.send',
      { to: 'grace@example.com', template: 'welcome', props: {}, idempotencyKey: 'transient-1' },
      { jobId: 'transient-1' },
    );
    await waitForJobState(emails(), id, 'delayed');
    expect(await deliveryRow('transient-1')).toMatchObject({
      status: 'failed',
      attempts: 1,
      last_error: expect.stringMatching(/451/),
    });
    // Skip the 2 s backoff rather than wait it out.
    await (await emails().getJob(id))!.promote();
    await waitForJobState(emails(), id, 'completed');
    expect(sink.messages.slice(before)).toHaveLength(1);
    expect(await deliveryRow('transient-1')).toMatchObject({ status: 'sent', attempts: 2, last_error: null });
  });

  it('fails a permanent SMTP refusal for good', async () => {
    sink.failNext(1, 550, 'no such mailbox');
    const id = await env.producer.enqueue('email.send', {
      to: 'nobody@example.com',
      template: 'welcome',
      props: {},
      idempotencyKey: 'permanent-1',
    });
    const failed = await waitForJobState(emails(), id, 'failed');
    expect(failed.failedReason).toMatch(/^the mail server refused the message for good: .*550/);
    expect(failed.attemptsMade).toBe(1);
    expect(await deliveryRow('permanent-1')).toMatchObject({ status: 'failed', attempts: 1 });
  });
});

describe('email.send stopped at the soft limit', () => {
  const data = (key: string) => ({
    to: 'ada@example.com',
    template: 'welcome' as const,
    props: {},
    idempotencyKey: key,
  });

  it('records the failure without waiting behind the lock that held the attempt', async () => {
    // Another transaction holds the key's row (a stuck sender of the same key).
    const holder = await env.db.connect();
    await holder.query('BEGIN');
    await holder.query(
      `INSERT INTO email_deliveries (idempotency_key, template, recipient, status)
       VALUES ('held-1', 'welcome', 'ada@example.com', 'sending')`,
    );
    const mailer = createMailer({ url: sink.url, from: 'LMS <no-reply@lms.test>' });
    const handler = createEmailHandler({ pool: worker.pool, mailer, config: { APP_DOMAIN: 'lms.test' } });
    const controller = new AbortController();
    try {
      const run = handler(data('held-1'), handlerContext({ signal: controller.signal }));
      await eventually(async () => {
        const { rows } = await env.db.query<{ waiting: number }>(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        return rows[0]!.waiting > 0;
      });
      controller.abort(new SoftTimeLimitError(240_000));
      // Settles while the row is still held: the failure record gave up on it instead of waiting.
      await expect(run).rejects.toThrow(/canceling statement due to user request/);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
      mailer.close();
    }
    expect(await deliveryRow('held-1')).toBeUndefined();
  });

  it('still records the failure of an attempt stopped at the soft limit when nothing holds the row', async () => {
    // An SMTP server that accepts the connection and never greets: the send hangs until the signal.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const mailer = createMailer({ url: `smtp://127.0.0.1:${port}`, from: 'LMS <no-reply@lms.test>' });
    const handler = createEmailHandler({ pool: worker.pool, mailer, config: { APP_DOMAIN: 'lms.test' } });
    const controller = new AbortController();
    try {
      const run = handler(data('silent-1'), handlerContext({ signal: controller.signal }));
      await eventually(() => Promise.resolve(sockets.length > 0));
      controller.abort(new SoftTimeLimitError(240_000));
      await expect(run).rejects.toThrow();
    } finally {
      mailer.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
    expect(await deliveryRow('silent-1')).toMatchObject({
      status: 'failed',
      attempts: 1,
      last_error: expect.any(String),
    });
  });
});

describe('email.inactivity-reminders', () => {
  it('queues one reminder per idle enrolment and none again once sent', async () => {
    const course = await insertCourse(env.db, { title: 'Difference Engines' });
    const idle = await insertUser(env.db, { name: 'Idle Learner' });
    const busy = await insertUser(env.db, { name: 'Busy Learner' });
    const idleEnrollment = await enroll(env.db, idle.id, course.id, { idleDays: 20 });
    await enroll(env.db, busy.id, course.id, { idleDays: 1 });
    const inactive = await insertUser(env.db, { name: 'Gone' });
    await env.db.query('UPDATE users SET active = false WHERE id = $1', [inactive.id]);
    await enroll(env.db, inactive.id, course.id, { idleDays: 30 });

    const before = sink.messages.length;
    const scan = await env.producer.enqueue('email.inactivity-reminders', {});
    await waitForJobState(emails(), scan, 'completed');
    const reminderJobs = async () =>
      (await outboxJobs(env.db, 'email.send')).filter((job) =>
        (job.data as { idempotencyKey: string }).idempotencyKey.startsWith('inactivity-reminder-'),
      );
    const reminders = await reminderJobs();
    expect(reminders).toHaveLength(1);
    expect(reminders[0]!.data).toMatchObject({
      to: idle.email,
      props: { name: 'Idle Learner', courseTitle: 'Difference Engines', days: 14 },
      idempotencyKey: expect.stringMatching(new RegExp(`^inactivity-reminder-${idleEnrollment}-\\d+$`)),
    });
    await waitForJobState(emails(), reminders[0]!.id, 'completed');
    expect(sink.messages.slice(before).map((message) => message.to)).toEqual([[idle.email]]);

    // A second scan (the next day, or a second scheduler) finds the reminder sent.
    const handler = createInactivityRemindersHandler({
      pool: worker.pool,
      config: { INACTIVITY_REMINDER_DAYS: 14 },
    });
    // Its outbox row gone, the job id would not hold a repeat back: only the sent record does.
    await env.db.query(`DELETE FROM outbox WHERE job_id = $1`, [reminders[0]!.id]);
    await handler({}, handlerContext());
    expect(await reminderJobs()).toHaveLength(0);
  });
});
