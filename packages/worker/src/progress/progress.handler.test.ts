import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '@lms/core/queue';
import type { WorkerProcess } from '../runtime/worker-process.js';
import {
  attemptQuiz,
  completeLessons,
  enroll,
  insertCourse,
  insertSubscription,
  insertUser,
} from '../testing/factories.js';
import {
  createWorkerTestEnv,
  handlerContext,
  outboxJobs,
  waitForJobState,
  type WorkerTestEnv,
} from '../testing/worker-harness.js';
import { createProgressHandler } from './progress.handler.js';

let env: WorkerTestEnv;
let worker: WorkerProcess;

beforeAll(async () => {
  env = await createWorkerTestEnv('progress');
  // Only the progress queue runs: the follow-up jobs stay queued for the assertions.
  worker = await env.startWorker({ queues: ['progress'] });
  await insertSubscription(env.db, {
    url: 'https://hooks.example.com/lms',
    events: ['course.completed'],
    secret: 'whsec',
  });
});

afterAll(async () => {
  await env.cleanup();
});

async function enrollment(id: string) {
  const { rows } = await env.db.query<{ status: string; progress: string; completed_at: Date | null }>(
    'SELECT status, progress::text AS progress, completed_at FROM enrollments WHERE id = $1',
    [id],
  );
  return rows[0]!;
}

async function recompute(enrollmentId: string) {
  const id = await env.producer.enqueue('progress.recompute', { enrollmentId });
  await waitForJobState(env.queue('progress'), id, 'completed');
}

async function eventsFor(enrollmentId: string, type: string) {
  const { rows } = await env.db.query<{ id: string; payload: Record<string, unknown> }>(
    `SELECT id, payload FROM webhook_events WHERE type = $1 AND payload->>'enrollmentId' = $2`,
    [type, enrollmentId],
  );
  return rows;
}

async function followUpJobs(enrollmentId: string) {
  const certificates = (await outboxJobs(env.db, 'certificate.render')).filter(
    (job) => (job.data as { enrollmentId: string }).enrollmentId === enrollmentId,
  );
  const emails = (await outboxJobs(env.db, 'email.send')).filter(
    (job) => (job.data as { idempotencyKey: string }).idempotencyKey === `course-completed-${enrollmentId}`,
  );
  return { certificates, emails };
}

describe('progress.recompute', () => {
  it('counts completed lessons and quizzes passed at least once', async () => {
    const user = await insertUser(env.db);
    const course = await insertCourse(env.db, { lessons: 4, quizzes: 2 });
    const id = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, id, course.lessonIds.slice(0, 2));
    await attemptQuiz(env.db, { quizId: course.quizIds[0]!, userId: user.id, enrollmentId: id, passed: false });
    await recompute(id);
    expect(await enrollment(id)).toMatchObject({ status: 'active', progress: '33.33', completed_at: null });

    // A failed attempt counts for nothing; two passes of the same quiz count once.
    await attemptQuiz(env.db, { quizId: course.quizIds[0]!, userId: user.id, enrollmentId: id, passed: true });
    await attemptQuiz(env.db, { quizId: course.quizIds[0]!, userId: user.id, enrollmentId: id, passed: true });
    await recompute(id);
    expect(await enrollment(id)).toMatchObject({ status: 'active', progress: '50.00' });
  });

  it('completes the enrolment at 100 % and publishes the certificate, the email and course.completed once', async () => {
    const user = await insertUser(env.db, { name: 'Ada Lovelace' });
    const course = await insertCourse(env.db, { title: 'Engines', lessons: 2, quizzes: 1 });
    const id = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, id, course.lessonIds);
    await attemptQuiz(env.db, { quizId: course.quizIds[0]!, userId: user.id, enrollmentId: id, passed: true });
    await recompute(id);

    const completed = await enrollment(id);
    expect(completed).toMatchObject({ status: 'completed', progress: '100.00', completed_at: expect.any(Date) });
    const { certificates, emails } = await followUpJobs(id);
    expect(certificates.map((job) => job.id)).toEqual([jobIdFor('certificate.render', id)]);
    expect(emails.map((job) => job.data)).toEqual([
      {
        to: user.email,
        template: 'course-completed',
        props: { name: 'Ada Lovelace', courseTitle: 'Engines' },
        idempotencyKey: `course-completed-${id}`,
      },
    ]);
    const events = await eventsFor(id, 'course.completed');
    expect(events).toHaveLength(1);
    expect(events[0]!.payload).toMatchObject({ enrollmentId: id, userId: user.id, courseId: course.id });
    const deliveries = await outboxJobs(env.db, 'webhook.deliver');
    expect(deliveries.filter((job) => (job.data as { eventId: string }).eventId === events[0]!.id)).toHaveLength(1);

    // Recomputing a completed enrolment changes nothing and queues nothing new.
    await recompute(id);
    await createProgressHandler({ pool: worker.pool })({ enrollmentId: id }, handlerContext());
    expect(await enrollment(id)).toEqual(completed);
    const again = await followUpJobs(id);
    expect(again.certificates).toHaveLength(1);
    expect(again.emails).toHaveLength(1);
    expect(await eventsFor(id, 'course.completed')).toHaveLength(1);
  });

  it('completes once when several recomputes race', async () => {
    const user = await insertUser(env.db);
    const course = await insertCourse(env.db, { lessons: 3 });
    const id = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, id, course.lessonIds);
    const handler = createProgressHandler({ pool: worker.pool });
    await Promise.all(Array.from({ length: 5 }, () => handler({ enrollmentId: id }, handlerContext())));
    expect(await enrollment(id)).toMatchObject({ status: 'completed', progress: '100.00' });
    expect(await eventsFor(id, 'course.completed')).toHaveLength(1);
    const { emails, certificates } = await followUpJobs(id);
    expect(emails).toHaveLength(1);
    expect(certificates).toHaveLength(1);
  });

  it('publishes the follow-ups a crash left out when the completion was already recorded', async () => {
    const user = await insertUser(env.db);
    const course = await insertCourse(env.db, { lessons: 1 });
    const id = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, id, course.lessonIds);
    // As if a run committed the completion, then died before publishing.
    await env.db.query(
      `UPDATE enrollments SET status = 'completed', completed_at = now(), progress = 100 WHERE id = $1`,
      [id],
    );
    await recompute(id);
    expect(await eventsFor(id, 'course.completed')).toHaveLength(1);
    expect((await followUpJobs(id)).certificates).toHaveLength(1);
  });

  it('never completes a course without lessons, nor touches a cancelled enrolment', async () => {
    const user = await insertUser(env.db);
    const quizOnly = await insertCourse(env.db, { lessons: 0, quizzes: 1 });
    const id = await enroll(env.db, user.id, quizOnly.id);
    await attemptQuiz(env.db, { quizId: quizOnly.quizIds[0]!, userId: user.id, enrollmentId: id, passed: true });
    await recompute(id);
    expect(await enrollment(id)).toMatchObject({ status: 'active', progress: '100.00' });

    const course = await insertCourse(env.db, { lessons: 2 });
    const cancelled = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, cancelled, course.lessonIds);
    await env.db.query(`UPDATE enrollments SET status = 'cancelled' WHERE id = $1`, [cancelled]);
    await recompute(cancelled);
    expect(await enrollment(cancelled)).toMatchObject({ status: 'cancelled', progress: '0.00' });
  });

  it('completes a job for an enrolment that no longer exists, and fails one that is not a UUID', async () => {
    await recompute('00000000-0000-4000-8000-000000000000');
    // The producer refuses such a payload; a job queued past it (an older release, a hand-made
    // job) fails for good on the same schema, without a retry.
    const job = await env.queue('progress').add('progress.recompute', { enrollmentId: 'e-1' }, { attempts: 3 });
    const failed = await waitForJobState(env.queue('progress'), job.id!, 'failed');
    expect(failed.failedReason).toBe('invalid payload for progress.recompute: enrollmentId: must be a UUID');
    expect(failed.attemptsMade).toBe(1);
  });
});
