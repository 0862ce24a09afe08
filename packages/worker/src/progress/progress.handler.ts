import { withTransaction } from '@lms/core';
import type { JobHandler } from '../job-types.js';
import { loadEnrollmentSummary } from '../enrollments/enrollment.repository.js';
import { publishCourseCompleted, type FollowUpDeps } from '../enrollments/follow-ups.js';
import { recomputeProgress } from './progress.repository.js';

/**
 * `progress.recompute`: brings an enrolment's progress up to date and, when that completes it,
 * publishes the completion's follow-ups (certificate, email, `course.completed`) once. A run
 * repeated after a crash finds the completion already recorded and only publishes what the
 * crash left unpublished; a recompute of a finished enrolment changes and queues nothing.
 */
export function createProgressHandler(deps: FollowUpDeps): JobHandler<'progress.recompute'> {
  return async ({ enrollmentId }, ctx) => {
    const result = await withTransaction(deps.pool, (client) => recomputeProgress(client, enrollmentId), ctx.signal);
    if (!result) {
      ctx.log.info('the enrolment no longer exists: nothing to recompute');
      return;
    }
    ctx.log.debug({ progress: result.progress, status: result.status }, 'progress recomputed');
    if (result.status !== 'completed' || result.completionPublished) return;
    const enrollment = await loadEnrollmentSummary(deps.pool, enrollmentId);
    if (!enrollment) return;
    if (await publishCourseCompleted(deps, enrollment)) ctx.log.info('course completed: follow-ups published');
  };
}
