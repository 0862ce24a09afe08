import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';
import { scoreAnswers } from './quizzes.service.js';

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
  // Enough connections that simultaneous attempts really run side by side.
  api = await createTestApi({ DB_POOL_SIZE: '10' });
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
    expect(list.body.items).toEqual([
      {
        id: quizId,
        courseId,
        title: 'Joins',
        passMark: 60,
        maxAttempts: 3,
        cooldownSeconds: 0,
        revealAnswers: 'after_last_attempt',
        questionCount: 3,
      },
    ]);
  });

  it('scores attempts on the server and queues the progress recompute', async () => {
    const taker = await createUser(api, 'student');
    const enrolled = await call(api, 'post', `/api/v1/courses/${courseId}/enroll`, { token: taker.token });
    const failed = await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
      token: taker.token,
      body: { answers: [1, 0, 1] },
    });
    expect(failed.status).toBe(201);
    expect(failed.body).toMatchObject({
      score: 33,
      passed: false,
      attemptsUsed: 1,
      attemptsRemaining: 2,
      nextAttemptAt: null,
      review: null,
    });
    const passed = await call(api, 'post', `/api/v1/quizzes/${quizId}/attempts`, {
      token: taker.token,
      body: { answers: [1, 2, 0] },
    });
    expect(passed.body).toMatchObject({ score: 100, passed: true, attemptsUsed: 2, attemptsRemaining: 1 });
    // Passed: the review may show which answers were right, and the quiz is over for this learner.
    expect(passed.body.review).toEqual(
      [1, 2, 0].map((option) => ({
        questionId: expect.any(String),
        chosenOption: option,
        correctOption: option,
        correct: true,
      })),
    );
    const stored = await api.db.query(
      'SELECT score, passed FROM quiz_attempts WHERE user_id = $1 ORDER BY created_at',
      [taker.id],
    );
    expect(stored.rows).toEqual([
      { score: 33, passed: false },
      { score: 100, passed: true },
    ]);
    // Only the pass changes progress: one recompute, in the outbox with the attempt.
    const recomputes = await api.db.query<{ job_id: string; payload: unknown }>(
      `SELECT job_id, payload FROM outbox WHERE job_name = 'progress.recompute' AND payload->>'enrollmentId' = $1`,
      [enrolled.body.id],
    );
    expect(recomputes.rows).toEqual([
      {
        job_id: `progress-recompute-${enrolled.body.id as string}-attempt-${passed.body.id as string}`,
        payload: { enrollmentId: enrolled.body.id },
      },
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

/** 5 questions × 4 options whose key the attacker below does not hit by luck in 3 attempts. */
const ORACLE_KEY = [2, 3, 1, 3, 2];
const OPTIONS = 4;

/** A quiz of its own (5 × 4, key ORACLE_KEY) with `settings`, and a learner enrolled in its course. */
async function quizWithLearner(settings: Record<string, unknown> = {}) {
  const course = await createCourse(api, instructor);
  const created = await call(api, 'post', `/api/v1/courses/${course.id}/quizzes`, {
    token: instructor.token,
    body: {
      title: 'Oracle',
      passMark: 100,
      questions: ORACLE_KEY.map((correctOption, index) => ({
        prompt: `Question ${index + 1}`,
        options: ['a', 'b', 'c', 'd'],
        correctOption,
      })),
      ...settings,
    },
  });
  expect(created.status).toBe(201);
  const taker = await createUser(api, 'student');
  expect((await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: taker.token })).status).toBe(201);
  const attempt = (answers: number[]) =>
    call(api, 'post', `/api/v1/quizzes/${created.body.id as string}/attempts`, {
      token: taker.token,
      body: { answers },
    });
  const stored = async () =>
    (
      await api.db.query<{ count: number }>('SELECT count(*)::int AS count FROM quiz_attempts WHERE quiz_id = $1', [
        created.body.id,
      ])
    ).rows[0]!.count;
  return { quizId: created.body.id as string, taker, attempt, stored };
}

/**
 * The oracle attack: start from all first options and change one answer per attempt, reading
 * the score. A rise means the new option is right, a fall means the old one was, no change means
 * neither; after k - 2 unchanged tries the last option must be right. `score` answers null when
 * an attempt is refused. Returns the best score and how many attempts were scored.
 */
async function oracleAttack(
  questions: number,
  options: number,
  score: (answers: number[]) => Promise<number | null>,
): Promise<{ best: number; attempts: number }> {
  let attempts = 0;
  // The answers `current` is the score of; each trial differs from them in one place.
  const answers = new Array<number>(questions).fill(0);
  // Options known right without having been submitted (the last option, by elimination).
  const deduced = new Map<number, number>();
  let current = await score(answers);
  if (current === null) return { best: 0, attempts };
  attempts++;
  for (let question = 0; question < questions && current < 100; question++) {
    let settled = false;
    for (let option = 1; option < options - 1 && !settled; option++) {
      const trial = answers.with(question, option);
      const result = await score(trial);
      if (result === null) return { best: current, attempts };
      attempts++;
      if (result > current) {
        answers[question] = option;
        current = result;
      }
      settled = result !== current || answers[question] === option;
    }
    if (!settled) deduced.set(question, options - 1);
  }
  if (current < 100) {
    const result = await score(answers.map((answer, question) => deduced.get(question) ?? answer));
    if (result === null) return { best: current, attempts };
    attempts++;
    current = result;
  }
  return { best: current, attempts };
}

describe('attempt limits', () => {
  it('takes maxAttempts attempts (3 by default), reveals the answers on the last, then answers 409', async () => {
    const { attempt, stored } = await quizWithLearner();
    for (const used of [1, 2]) {
      const result = await attempt([0, 0, 0, 0, 0]);
      expect(result.status).toBe(201);
      expect(result.body).toMatchObject({ score: 0, attemptsUsed: used, attemptsRemaining: 3 - used, review: null });
    }
    const last = await attempt([2, 0, 0, 0, 0]);
    expect(last.body).toMatchObject({ score: 20, attemptsUsed: 3, attemptsRemaining: 0 });
    expect(last.body.review.map((r: { correctOption: number }) => r.correctOption)).toEqual(ORACLE_KEY);
    expect(last.body.review.map((r: { correct: boolean }) => r.correct)).toEqual([true, false, false, false, false]);
    const refused = await attempt(ORACLE_KEY);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: 'quiz_attempts_exhausted',
      message: 'you have used all 3 attempts at this quiz',
    });
    expect(await stored()).toBe(3);
  });

  it("honours the instructor's maxAttempts and revealAnswers: 'never' shows no verdict, even on the last attempt", async () => {
    const { attempt } = await quizWithLearner({ maxAttempts: 2, revealAnswers: 'never' });
    expect((await attempt(ORACLE_KEY)).body).toMatchObject({ score: 100, passed: true, review: null });
    // Never revealed, so a learner who passed may still use the attempts left.
    const last = await attempt([0, 0, 0, 0, 0]);
    expect(last.body).toMatchObject({ attemptsRemaining: 0, review: null });
    expect(JSON.stringify(last.body)).not.toContain('correct');
    expect((await attempt(ORACLE_KEY)).status).toBe(409);
  });

  it("'after_pass' reveals only once passed, and a learner who has seen the answers cannot attempt again", async () => {
    const { attempt, stored } = await quizWithLearner({ maxAttempts: 5, revealAnswers: 'after_pass' });
    expect((await attempt([2, 3, 1, 3, 0])).body).toMatchObject({ score: 80, passed: false, review: null });
    const passed = await attempt(ORACLE_KEY);
    expect(passed.body).toMatchObject({ passed: true, attemptsRemaining: 3 });
    expect(passed.body.review).toHaveLength(5);
    const refused = await attempt(ORACLE_KEY);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('quiz_attempts_exhausted');
    expect(refused.body.error.message).toMatch(/seen its answers/);
    expect(await stored()).toBe(2);
  });

  it('refuses an attempt inside the cooldown with 429 and Retry-After, and takes it once the cooldown is over', async () => {
    const { quizId, taker, attempt, stored } = await quizWithLearner({ cooldownSeconds: 3600 });
    const first = await attempt([0, 0, 0, 0, 0]);
    expect(first.status).toBe(201);
    expect(Date.parse(first.body.nextAttemptAt) - Date.parse(first.body.createdAt)).toBe(3_600_000);
    const early = await attempt([1, 0, 0, 0, 0]);
    expect(early.status).toBe(429);
    expect(early.body.error.code).toBe('quiz_cooldown');
    const retryAfter = Number(early.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(early.body.error.message).toBe(`wait ${retryAfter} s before your next attempt at this quiz`);
    expect(await stored()).toBe(1);
    // The hour passes: the attempt is moved back instead of the test waiting.
    await api.db.query(
      `UPDATE quiz_attempts SET created_at = created_at - interval '3600 seconds' WHERE quiz_id = $1 AND user_id = $2`,
      [quizId, taker.id],
    );
    expect((await attempt([1, 0, 0, 0, 0])).status).toBe(201);
  });

  it('never takes more than maxAttempts from simultaneous attempts', async () => {
    const { attempt, stored } = await quizWithLearner({ maxAttempts: 3, revealAnswers: 'never' });
    const results = await Promise.all(Array.from({ length: 10 }, () => attempt([0, 0, 0, 0, 0])));
    const statuses = results.map((result) => result.status).sort();
    expect(statuses).toEqual([201, 201, 201, 409, 409, 409, 409, 409, 409, 409]);
    expect(
      results
        .filter((result) => result.status === 201)
        .map((result) => result.body.attemptsUsed as number)
        .sort(),
    ).toEqual([1, 2, 3]);
    expect(await stored()).toBe(3);
  });

  it('validates the settings of a new quiz', async () => {
    const bad = await call(api, 'post', `/api/v1/courses/${courseId}/quizzes`, {
      token: instructor.token,
      body: { ...quiz, maxAttempts: 0 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^maxAttempts: /);
    const reveal = await call(api, 'post', `/api/v1/courses/${courseId}/quizzes`, {
      token: instructor.token,
      body: { ...quiz, revealAnswers: 'always' },
    });
    expect(reveal.status).toBe(400);
    expect(reveal.body.error.message).toMatch(/^revealAnswers: /);
  });
});

describe('the oracle attack', () => {
  it('recovers every key of a 5 × 4 quiz when attempts are unlimited — the attack is real', async () => {
    let longest = 0;
    for (let code = 0; code < OPTIONS ** 5; code++) {
      const key = Array.from({ length: 5 }, (_, index) => Math.floor(code / OPTIONS ** index) % OPTIONS);
      const { best, attempts } = await oracleAttack(5, OPTIONS, (answers) =>
        Promise.resolve(scoreAnswers(key, answers)),
      );
      expect(best, `key ${key.join('')}`).toBe(100);
      longest = Math.max(longest, attempts);
    }
    expect(longest).toBeGreaterThan(3);
  });

  it('within 3 attempts reaches 100 % only on keys it guessed outright: 5 of 1024', async () => {
    let won = 0;
    for (let code = 0; code < OPTIONS ** 5; code++) {
      const key = Array.from({ length: 5 }, (_, index) => Math.floor(code / OPTIONS ** index) % OPTIONS);
      let left = 3;
      const { best } = await oracleAttack(5, OPTIONS, (answers) =>
        Promise.resolve(left-- > 0 ? scoreAnswers(key, answers) : null),
      );
      if (best === 100) won++;
    }
    // Three attempts are three guesses: the first, then one per possible reading of each score.
    expect(won).toBeLessThanOrEqual(5);
  });

  it('against the API: the attacker is stopped at the limit below 100 % and never sees a verdict before the last attempt', async () => {
    const { attempt, stored } = await quizWithLearner();
    const bodies: Array<Record<string, unknown>> = [];
    const refusals: number[] = [];
    const { best, attempts } = await oracleAttack(5, OPTIONS, async (answers) => {
      const result = await attempt(answers);
      if (result.status !== 201) {
        refusals.push(result.status);
        return null;
      }
      bodies.push(result.body);
      return result.body.score as number;
    });
    expect(attempts).toBe(3);
    expect(best).toBeLessThan(100);
    expect(refusals).toEqual([409]);
    expect(bodies.slice(0, 2).map((body) => body.review)).toEqual([null, null]);
    expect(bodies.slice(0, 2).map((body) => JSON.stringify(body))).not.toContainEqual(
      expect.stringContaining('correct'),
    );
    expect(await stored()).toBe(3);
  });
});
