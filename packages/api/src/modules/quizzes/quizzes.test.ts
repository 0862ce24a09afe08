import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';

let api: TestApi;
let instructor: TestUser;
let learner: TestUser;
let courseId: string;
let quizId: string;

const quiz = {
  title: 'Joins',
  passMark: 60,
  questions: [
    { prompt: 'Which join keeps unmatched left rows?', options: ['INNER', 'LEFT', 'CROSS'], correctOption: 1 },
    { prompt: 'NULL = NULL is…', options: ['true', 'false', 'NULL'], correctOption: 2 },
    { prompt: 'An index speeds up…', options: ['reads', 'nothing'], correctOption: 0 },
  ],
};

beforeAll(async () => {
  api = await createTestApi();
  instructor = await createUser(api, 'instructor');
  learner = await createUser(api, 'student');
  courseId = (await createCourse(api, instructor)).id;
  const created = await call(api, 'post', `/api/v1/courses/${courseId}/quizzes`, {
    token: instructor.token,
    body: quiz,
  });
  expect(created.status).toBe(201);
  quizId = created.body.id as string;
});

afterAll(async () => {
  await api.close();
});

describe('quizzes', () => {
  it('gives the instructor the correct options and the learner none', async () => {
    const own = await call(api, 'get', `/api/v1/quizzes/${quizId}`, { token: instructor.token });
    expect(own.body.questions.map((q: { correctOption: number }) => q.correctOption)).toEqual([1, 2, 0]);
    expect((await call(api, 'get', `/api/v1/quizzes/${quizId}`, { token: learner.token })).status).toBe(403);
    await call(api, 'post', `/api/v1/courses/${courseId}/enroll`, { token: learner.token });
    const seen = await call(api, 'get', `/api/v1/quizzes/${quizId}`, { token: learner.token });
    expect(seen.status).toBe(200);
    expect(seen.body.questions).toHaveLength(3);
    expect(JSON.stringify(seen.body)).not.toContain('correctOption');
    const list = await call(api, 'get', `/api/v1/courses/${courseId}/quizzes`);
    expect(list.body.items).toEqual([{ id: quizId, courseId, title: 'Joins', passMark: 60, questionCount: 3 }]);
  });

  it('scores attempts on the server and queues the progress recompute', async () => {
    const taker = await createUser(api, 'student');
    await call(api, 'post', `/api/v1/courses/${courseId}/enroll`, { token: taker.token });
    const failed = await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
      token: taker.token,
      body: { answers: [1, 0, 1] },
    });
    expect(failed.status).toBe(201);
    expect(failed.body).toMatchObject({ score: 33, passed: false });
    const passed = await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
      token: taker.token,
      body: { answers: [1, 2, 0] },
    });
    expect(passed.body).toMatchObject({ score: 100, passed: true });
    const stored = await api.db.query(
      'SELECT score, passed FROM quiz_attempts WHERE user_id = $1 ORDER BY created_at',
      [taker.id],
    );
    expect(stored.rows).toEqual([
      { score: 33, passed: false },
      { score: 100, passed: true },
    ]);
  });

  it('refuses attempts without an enrolment (403) and with the wrong number of answers (400)', async () => {
    const stranger = await createUser(api, 'student');
    expect(
      (
        await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
          token: stranger.token,
          body: { answers: [1, 2, 0] },
        })
      ).status,
    ).toBe(403);
    const wrong = await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
      token: learner.token,
      body: { answers: [1] },
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.message).toBe('answers: expected 3 answers, one per question, got 1');
  });

  it('validates new quizzes: the correct option must exist', async () => {
    const bad = await call(api, 'post', `/api/v1/courses/${courseId}/quizzes`, {
      token: instructor.token,
      body: { title: 'Bad', passMark: 50, questions: [{ prompt: 'x', options: ['a', 'b'], correctOption: 2 }] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('questions.0.correctOption: must index one of the options');
    const other = await createUser(api, 'instructor');
    expect(
      (await call(api, 'post', `/api/v1/courses/${courseId}/quizzes`, { token: other.token, body: quiz })).status,
    ).toBe(403);
  });
});
