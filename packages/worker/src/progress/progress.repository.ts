import type pg from 'pg';
import { maybeOne, type Queryable } from '@lms/core';

export interface RecomputeResult {
  status: 'active' | 'completed' | 'cancelled';
  /** Progress after the recompute, as stored (numeric(5,2) as text, e.g. "66.67"). */
  progress: string;
  /** This recompute completed the enrolment. */
  completedNow: boolean;
  /** The follow-ups of the completion have been published (enrollment_follow_ups). */
  completionPublished: boolean;
}

/**
 * Recomputes an enrolment's progress inside the caller's transaction:
 * (lessons completed + quizzes passed at least once) / (lessons + quizzes) × 100, completing it
 * (status, completed_at) when that reaches 100 and the course has a lesson. The row is locked
 * first, so the counts are read after any concurrent recompute committed: the last writer
 * always saw the most. Completed and cancelled enrolments are left as they are, and an
 * unchanged progress is not rewritten. Returns null for an enrolment that does not exist.
 */
export async function recomputeProgress(client: pg.PoolClient, enrollmentId: string): Promise<RecomputeResult | null> {
  const locked = await client.query<{
    status: RecomputeResult['status'];
    progress: string;
    course_id: string;
    published: boolean;
  }>(
    `SELECT e.status, e.progress::text AS progress, e.course_id,
            EXISTS (SELECT 1 FROM enrollment_follow_ups f
                     WHERE f.enrollment_id = e.id AND f.kind = 'course.completed') AS published
       FROM enrollments e WHERE e.id = $1 FOR UPDATE`,
    [enrollmentId],
  );
  const row = maybeOne(locked);
  if (!row) return null;
  const unchanged = {
    status: row.status,
    progress: row.progress,
    completedNow: false,
    completionPublished: row.published,
  };
  if (row.status !== 'active') return unchanged;
  // Recomputed now, changed or not: the reconciliation looks for completions newer than this.
  await client.query('UPDATE enrollments SET progress_updated_at = now() WHERE id = $1', [enrollmentId]);
  const updated = await client.query<{ status: RecomputeResult['status']; progress: string }>(
    `WITH counts AS (
       SELECT (SELECT count(*) FROM lessons WHERE course_id = $2) AS lessons,
              (SELECT count(*) FROM quizzes WHERE course_id = $2) AS quizzes,
              (SELECT count(*) FROM lesson_completions lc JOIN lessons l ON l.id = lc.lesson_id
                WHERE lc.enrollment_id = $1 AND l.course_id = $2) AS lessons_done,
              (SELECT count(DISTINCT qa.quiz_id) FROM quiz_attempts qa JOIN quizzes q ON q.id = qa.quiz_id
                WHERE qa.enrollment_id = $1 AND qa.passed AND q.course_id = $2) AS quizzes_passed
     ), computed AS (
       SELECT CASE WHEN lessons + quizzes = 0 THEN 0
                   ELSE round(100.0 * (lessons_done + quizzes_passed) / (lessons + quizzes), 2) END AS progress,
              lessons >= 1 AND lessons_done + quizzes_passed = lessons + quizzes AS complete
         FROM counts
     )
     UPDATE enrollments e
        SET progress = computed.progress,
            status = CASE WHEN computed.complete THEN 'completed' ELSE e.status END,
            completed_at = CASE WHEN computed.complete THEN now() ELSE e.completed_at END
       FROM computed
      WHERE e.id = $1 AND (e.progress <> computed.progress OR computed.complete)
      RETURNING e.status, e.progress::text AS progress`,
    [enrollmentId, row.course_id],
  );
  const after = maybeOne(updated);
  if (!after) return unchanged;
  return {
    status: after.status,
    progress: after.progress,
    completedNow: after.status === 'completed',
    completionPublished: row.published,
  };
}

/** An active enrolment whose progress is older than its newest completion. */
export interface StaleProgress {
  enrollmentId: string;
  /** The newest completion (lesson or passed quiz), in microseconds since the epoch, as text. */
  newestCompletion: string;
}

/**
 * Active enrolments with a lesson completed or a quiz passed after their progress was last
 * recomputed (or never recomputed since the column exists), whose newest completion is older
 * than `graceSeconds` (the recompute of a fresh one is on its way), by id after `afterId`.
 */
export async function findStaleProgress(
  db: Queryable,
  options: { graceSeconds: number; limit: number; afterId?: string },
): Promise<StaleProgress[]> {
  const { rows } = await db.query<{ id: string; newest: string }>(
    `SELECT e.id, (extract(epoch FROM c.newest) * 1000000)::bigint::text AS newest
       FROM enrollments e
       CROSS JOIN LATERAL (
         SELECT greatest(
                  (SELECT max(lc.completed_at) FROM lesson_completions lc WHERE lc.enrollment_id = e.id),
                  (SELECT max(qa.created_at) FROM quiz_attempts qa WHERE qa.enrollment_id = e.id AND qa.passed)
                ) AS newest
       ) c
      WHERE e.status = 'active'
        AND e.id > $3
        AND c.newest IS NOT NULL
        AND c.newest < now() - make_interval(secs => $1)
        AND (e.progress_updated_at IS NULL OR e.progress_updated_at < c.newest)
      ORDER BY e.id
      LIMIT $2`,
    [options.graceSeconds, options.limit, options.afterId ?? '00000000-0000-0000-0000-000000000000'],
  );
  return rows.map((row) => ({ enrollmentId: row.id, newestCompletion: row.newest }));
}
