import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '@lms/core/queue';
import type { WorkerProcess } from '../runtime/worker-process.js';
import { completedEnrollment, enroll, insertCourse, insertSubscription, insertUser } from '../testing/factories.js';
import {
  createWorkerTestEnv,
  handlerContext,
  outboxJobs,
  waitForJobState,
  type WorkerTestEnv,
} from '../testing/worker-harness.js';
import { pdfInfoEntry } from '../testing/pdf-info.js';
import { createCertificateHandler, newVerificationCode } from './certificate.handler.js';

let env: WorkerTestEnv;
let worker: WorkerProcess;
let storage: string;

beforeAll(async () => {
  env = await createWorkerTestEnv('certificates');
  storage = await mkdtemp(path.join(os.tmpdir(), 'lms-certificates-'));
  worker = await env.startWorker({ queues: ['certificates'], env: { APP_DOMAIN: 'lms.test' } });
  await insertSubscription(env.db, {
    url: 'https://hooks.example.com/lms',
    events: ['certificate.issued'],
    secret: 's',
  });
});

afterAll(async () => {
  await env.cleanup();
  await rm(storage, { recursive: true, force: true });
});

interface CertificateRecord {
  id: string;
  code: string;
  learner_name: string;
  course_title: string;
  pdf: Buffer | null;
  pdf_path: string | null;
}

async function certificatesOf(enrollmentId: string): Promise<CertificateRecord[]> {
  const { rows } = await env.db.query<CertificateRecord>(
    'SELECT id, code, learner_name, course_title, pdf, pdf_path FROM certificates WHERE enrollment_id = $1',
    [enrollmentId],
  );
  return rows;
}

async function render(enrollmentId: string, state: 'completed' | 'failed' = 'completed') {
  const id = await env.producer.enqueue(
    'certificate.render',
    { enrollmentId },
    { jobId: jobIdFor('certificate.render', enrollmentId) },
  );
  return waitForJobState(env.queue('certificates'), id, state);
}

async function issuedEvents(enrollmentId: string) {
  const { rows } = await env.db.query<{ payload: Record<string, unknown> }>(
    `SELECT payload FROM webhook_events WHERE type = 'certificate.issued' AND payload->>'enrollmentId' = $1`,
    [enrollmentId],
  );
  return rows;
}

async function issuedEmails(enrollmentId: string) {
  return (await outboxJobs(env.db, 'email.send')).filter(
    (job) => (job.data as { idempotencyKey: string }).idempotencyKey === `certificate-issued-${enrollmentId}`,
  );
}

describe('certificate.render', () => {
  it('renders a PDF with the learner, course, date and code into the database, then publishes once', async () => {
    const { enrollmentId, user, courseId } = await completedEnrollment(env.db, {
      name: 'Ada Lovelace',
      courseTitle: 'Analytical Engines',
    });
    await render(enrollmentId);
    const [certificate, ...others] = await certificatesOf(enrollmentId);
    expect(others).toEqual([]);
    expect(certificate).toMatchObject({
      code: expect.stringMatching(/^LMS-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/),
      learner_name: 'Ada Lovelace',
      course_title: 'Analytical Engines',
      pdf_path: null,
    });
    const pdf = certificate!.pdf!;
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    expect(pdfInfoEntry(pdf, 'Keywords')).toBe(certificate!.code);
    expect(pdfInfoEntry(pdf, 'Subject')).toBe('Ada Lovelace completed Analytical Engines');

    const events = await issuedEvents(enrollmentId);
    expect(events.map((event) => event.payload)).toEqual([
      {
        certificateId: certificate!.id,
        enrollmentId,
        userId: user.id,
        courseId,
        code: certificate!.code,
        issuedAt: expect.any(String),
      },
    ]);
    const emails = await issuedEmails(enrollmentId);
    expect(emails.map((job) => job.data)).toEqual([
      {
        to: user.email,
        template: 'certificate-issued',
        props: { name: 'Ada Lovelace', courseTitle: 'Analytical Engines', code: certificate!.code },
        idempotencyKey: `certificate-issued-${enrollmentId}`,
      },
    ]);

    // The job again (after its id was freed) and the handler twice at once: still one of everything.
    await env.queue('certificates').clean(0, 100, 'completed');
    await render(enrollmentId);
    const handler = createCertificateHandler({
      pool: worker.pool,
      config: { CERTIFICATE_STORAGE_DIR: undefined, APP_DOMAIN: 'lms.test' },
    });
    await Promise.all([handler({ enrollmentId }, handlerContext()), handler({ enrollmentId }, handlerContext())]);
    expect((await certificatesOf(enrollmentId)).map((row) => row.code)).toEqual([certificate!.code]);
    expect(await issuedEvents(enrollmentId)).toHaveLength(1);
    expect(await issuedEmails(enrollmentId)).toHaveLength(1);
  });

  it('stores the PDF in CERTIFICATE_STORAGE_DIR when set, one file per enrolment', async () => {
    const { enrollmentId } = await completedEnrollment(env.db);
    const handler = createCertificateHandler({
      pool: worker.pool,
      config: { CERTIFICATE_STORAGE_DIR: storage, APP_DOMAIN: 'lms.test' },
    });
    await Promise.all([handler({ enrollmentId }, handlerContext()), handler({ enrollmentId }, handlerContext())]);
    const [certificate] = await certificatesOf(enrollmentId);
    expect(certificate).toMatchObject({ pdf: null, pdf_path: `${enrollmentId}.pdf` });
    expect(await readdir(storage)).toEqual([`${enrollmentId}.pdf`]);
    const pdf = await readFile(path.join(storage, certificate!.pdf_path!));
    expect(pdfInfoEntry(pdf, 'Keywords')).toBe(certificate!.code);
  });

  it('refuses an enrolment that is not completed, or does not exist, for good', async () => {
    const user = await insertUser(env.db);
    const course = await insertCourse(env.db);
    const active = await enroll(env.db, user.id, course.id);
    const failed = await render(active, 'failed');
    expect(failed.failedReason).toBe(`enrollment ${active} is active, not completed: no certificate`);
    expect(failed.attemptsMade).toBe(1);
    const missing = '00000000-0000-4000-8000-000000000001';
    expect((await render(missing, 'failed')).failedReason).toBe(`enrollment ${missing} does not exist: no certificate`);
    expect(await certificatesOf(active)).toEqual([]);
  });

  it('makes verification codes the schema accepts', () => {
    const codes = new Set(Array.from({ length: 1000 }, () => newVerificationCode()));
    expect(codes.size).toBe(1000);
    for (const code of codes) expect(code).toMatch(/^[A-Z0-9-]{8,64}$/);
  });
});
