import type pg from 'pg';
import { queueJob } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import type { JobHandler } from '../job-types.js';
import { findStaleProgress } from './progress.repository.js';

const BATCH = 500;

/**
 * A completion this recent is left alone: its own recompute, written to the outbox with it, is on
 * its way.
 */
export const RECONCILE_GRACE_SECONDS = 120;

/**
 * `progress.reconcile` (periodic): queues, through the outbox, a `progress.recompute` for every
 * active enrolment whose newest completion is newer than its progress. The job id names that
 * completion, so scans repeated before the recompute ran queue it once, and a later completion
 * gets a recompute of its own.
 */
export function createReconcileHandler(deps: { pool: pg.Pool }): JobHandler<'progress.reconcile'> {
  return async (_data, ctx) => {
    let afterId: string | undefined;
    let queued = 0;
    for (;;) {
      ctx.signal.throwIfAborted();
      const stale = await findStaleProgress(deps.pool, {
        graceSeconds: RECONCILE_GRACE_SECONDS,
        limit: BATCH,
        afterId,
      });
      for (const { enrollmentId, newestCompletion } of stale) {
        const jobId = jobIdFor('progress.recompute', enrollmentId, 'reconcile', newestCompletion);
        if (await queueJob(deps.pool, 'progress.recompute', { enrollmentId }, jobId)) queued++;
      }
      if (stale.length < BATCH) break;
      afterId = stale.at(-1)!.enrollmentId;
    }
    if (queued > 0) ctx.log.warn({ queued }, 'progress was behind its completions: recomputes queued');
    else ctx.log.info('every progress is up to date');
  };
}
