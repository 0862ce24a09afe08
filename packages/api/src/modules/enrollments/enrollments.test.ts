import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobName } from '@lms/core';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';

let api: TestApi;
let instructor: TestUser;
let learner: TestUser;

beforeAll(async () => {
  api = await createTestApi();
  instructor = await createUser(api, 'instructor');
  learner = await createUser(api, 'student', { name: 'Ada' });
});

afterAll(async () => {
  await api.close();
});

/** The jobs the API decided to queue: its outbox rows (the worker's relay moves them to the queues). */
async function queuedJobs(name: JobName) {
  const { rows } = await api.db.query<{ job_name: string; payload: Record<string, unknown> }>(
    'SELECT job_name, payload FROM outbox WHERE job_name = $1 ORDER BY id',
    [name],
  );
  return rows.map((row) => ({ name: row.job_name, data: row.payload }));
}

describe('enrolment', () => {
  it('enrols once (201, then 200 with the same enrolment), confirms by e-mail and publishes enrollment.created', async () => {
    await api.db.query(
      `INSERT INTO webhook_subscriptions (url, events, secret) VALUES ('https://hooks.example/lms', '{enrollment.created,lesson.completed}', 's')`,
    );
    const course = await createCourse(api, instructor, { title: 'Graphs' });
    const first = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      courseId: course.id,
      userId: learner.id,
      progress: 0,
      completedAt: null,
      status: 'active',
    });
    const again = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);

    const emails = (await queuedJobs('email.send')).filter((job) => job.data.template === 'enrollment-confirmation');
    expect(emails).toEqual([
      {
        name: 'email.send',
        data: {
          to: learner.email,
          template: 'enrollment-confirmation',
          props: { name: 'Ada', courseTitle: 'Graphs', courseId: course.id },
          idempotencyKey: `enrollment-confirmation-${first.body.id}`,
        },
      },
    ]);
    const events = await api.db.query<{ type: string; payload: Record<string, string> }>(
      `SELECT type, payload FROM webhook_events`,
    );
    expect(events.rows).toEqual([
      { type: 'enrollment.created', payload: { enrollmentId: first.body.id, userId: learner.id, courseId: course.id } },
    ]);
    expect((await queuedJobs('webhook.deliver')).map((job) => job.name)).toEqual(['webhook.deliver']);
  });

  it('refuses drafts and unknown courses (404)', async () => {
    const draft = await createCourse(api, instructor, { published: false });
    expect((await call(api, 'post', `/api/v1/courses/${draft.id}/enroll`, { token: learner.token })).status).toBe(404);
    expect(
      (await call(api, 'post', '/api/v1/courses/00000000-0000-0000-0000-000000000000/enroll', { token: learner.token }))
        .status,
    ).toBe(404);
  });

  it('lists only my enrolments', async () => {
    const me = await createUser(api, 'student');
    const someoneElse = await createUser(api, 'student');
    const course = await createCourse(api, instructor);
    await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: me.token });
    await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: someoneElse.token });
    const mine = await call(api, 'get', '/api/v1/enrollments', { token: me.token });
    expect(mine.body.items.map((e: { userId: string }) => e.userId)).toEqual([me.id]);
    expect(mine.body.nextCursor).toBeNull();
  });

  it('lists my enrolments page by page, newest first', async () => {
    const me = await createUser(api, 'student');
    const enrolled: string[] = [];
    for (let index = 0; index < 3; index++) {
      const course = await createCourse(api, instructor);
      const response = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: me.token });
      enrolled.push(response.body.id as string);
    }
    const first = await call(api, 'get', '/api/v1/enrollments?limit=2', { token: me.token });
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await call(api, 'get', `/api/v1/enrollments?limit=2&cursor=${first.body.nextCursor}`, {
      token: me.token,
    });
    expect(second.body.nextCursor).toBeNull();
    const paged = [...first.body.items, ...second.body.items].map((e: { id: string }) => e.id);
    expect(paged).toEqual(enrolled.reverse());
  });
});

describe('lesson completion', () => {
  it('records a completion once and queues the progress recompute and the webhook', async () => {
    const course = await createCourse(api, instructor, { lessons: 2 });
    const enrollment = (await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token }))
      .body as { id: string };
    const path = `/api/v1/enrollments/${enrollment.id}/lessons/${course.lessonIds[0]}/complete`;
    const done = await call(api, 'post', path, { token: learner.token });
    expect(done.status).toBe(200);
    expect(done.body.id).toBe(enrollment.id);
    expect((await call(api, 'post', path, { token: learner.token })).status).toBe(200);
    const completions = await api.db.query('SELECT lesson_id FROM lesson_completions WHERE enrollment_id = $1', [
      enrollment.id,
    ]);
    expect(completions.rows).toEqual([{ lesson_id: course.lessonIds[0] }]);
    const recomputes = (await queuedJobs('progress.recompute')).filter(
      (job) => job.data.enrollmentId === enrollment.id,
    );
    expect(recomputes).toEqual([{ name: 'progress.recompute', data: { enrollmentId: enrollment.id } }]);
    const events = await api.db.query(`SELECT payload FROM webhook_events WHERE type = 'lesson.completed'`);
    expect(events.rows).toContainEqual({
      payload: { enrollmentId: enrollment.id, lessonId: course.lessonIds[0], userId: learner.id, courseId: course.id },
    });
  });

  it("is 404 for someone else's enrolment and for a lesson of another course", async () => {
    const course = await createCourse(api, instructor);
    const elsewhere = await createCourse(api, instructor);
    const enrollment = (await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token }))
      .body as { id: string };
    const intruder = await createUser(api, 'student');
    expect(
      (
        await call(api, 'post', `/api/v1/enrollments/${enrollment.id}/lessons/${course.lessonIds[0]}/complete`, {
          token: intruder.token,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call(api, 'post', `/api/v1/enrollments/${enrollment.id}/lessons/${elsewhere.lessonIds[0]}/complete`, {
          token: learner.token,
        })
      ).status,
    ).toBe(404);
  });
});
