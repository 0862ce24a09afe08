import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attemptQuiz, completeLessons, enroll, insertCourse, insertUser } from '../testing/factories.js';
import { createWorkerTestEnv, handlerContext, outboxJobs, type WorkerTestEnv } from '../testing/worker-harness.js';
import { createProgressHandler } from './progress.handler.js';
import { createReconcileHandler, RECONCILE_GRACE_SECONDS } from './reconcile.handler.js';

let env: WorkerTestEnv;

beforeAll(async () => {
  env = await createWorkerTestEnv('reconcile');
});

afterAll(async () => {
  await env.cleanup();
});

/** Moves an enrolment's completions back in time, past the grace period. */
async function age(enrollmentId: string, seconds: number) {
  await env.db.query(
    `UPDATE lesson_completions SET completed_at = completed_at - make_interval(secs => $2) WHERE enrollment_id = $1`,
    [enrollmentId, seconds],
  );
  await env.db.query(
    `UPDATE quiz_attempts SET created_at = created_at - make_interval(secs => $2) WHERE enrollment_id = $1`,
    [enrollmentId, seconds],
  );
}

async function recomputesOf(enrollmentId: string) {
  return (await outboxJobs(env.db, 'progress.recompute')).filter(
    (job) => (job.data as { enrollmentId: string }).enrollmentId === enrollmentId,
  );
}

describe('progress.reconcile', () => {
  it('queues a recompute for progress older than its completions, once per newest completion', async () => {
    const reconcile = createReconcileHandler({ pool: env.db });
    const user = await insertUser(env.db);
    const course = await insertCourse(env.db, { lessons: 2, quizzes: 1 });
    // Stuck: its completions' recompute was lost (never recomputed).
    const stuck = await enroll(env.db, user.id, course.id);
    await completeLessons(env.db, stuck, course.lessonIds);
    await age(stuck, RECONCILE_GRACE_SECONDS + 60);
    // Fresh: its recompute is still on its way.
    const other = await insertUser(env.db);
    const fresh = await enroll(env.db, other.id, course.id);
    await completeLessons(env.db, fresh, course.lessonIds.slice(0, 1));
    // Nothing done yet: nothing to recompute.
    const idle = await enroll(env.db, (await insertUser(env.db)).id, course.id);

    await reconcile({}, handlerContext());
    await reconcile({}, handlerContext());
    expect((await recomputesOf(stuck)).map((job) => job.id)).toEqual([
      expect.stringMatching(new RegExp(`^progress-recompute-${stuck}-reconcile-\\d+$`)),
    ]);
    expect(await recomputesOf(fresh)).toEqual([]);
    expect(await recomputesOf(idle)).toEqual([]);

    // Recomputed: up to date, whatever the progress.
    await createProgressHandler({ pool: env.db })({ enrollmentId: stuck }, handlerContext());
    await env.db.query('DELETE FROM outbox');
    await reconcile({}, handlerContext());
    expect(await recomputesOf(stuck)).toEqual([]);

    // A quiz passed after that recompute (and lost): a recompute of its own.
    await attemptQuiz(env.db, { quizId: course.quizIds[0]!, userId: user.id, enrollmentId: stuck, passed: true });
    await env.db.query(`UPDATE enrollments SET progress_updated_at = now() - interval '1 hour' WHERE id = $1`, [stuck]);
    await age(stuck, RECONCILE_GRACE_SECONDS + 60);
    await reconcile({}, handlerContext());
    expect(await recomputesOf(stuck)).toHaveLength(1);
  });
});
