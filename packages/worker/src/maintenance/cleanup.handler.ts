import type { Queue } from 'bullmq';
import type pg from 'pg';
import { queueNames, type Config, type QueueName } from '@lms/core';
import { jobRetention } from '@lms/core/queue';
import type { JobHandler } from '../job-types.js';
import {
  deleteExpiredRefreshTokens,
  deleteOldWebhookDeliveries,
  deleteSentOutboxRows,
} from './maintenance.repository.js';

/** How long webhook delivery records stay for the admin API's delivery history. */
export const WEBHOOK_DELIVERY_RETENTION_DAYS = 30;
/**
 * How long relayed outbox rows stay: their job ids hold back a repeat of the same cause for that
 * long (BullMQ keeps completed jobs only a day), and they show what was queued when.
 */
export const OUTBOX_RETENTION_DAYS = 7;
const BATCH = 5000;

export interface CleanupDeps {
  pool: pg.Pool;
  /** The BullMQ queues (from the process's JobProducer). */
  queue: (name: QueueName) => Queue;
  config: Pick<Config, 'FAILED_JOB_RETENTION_HOURS'>;
}

/**
 * `maintenance.cleanup` (periodic): deletes expired refresh tokens, old webhook delivery
 * records and relayed outbox rows, and trims finished jobs past their retention. BullMQ only trims finished jobs when
 * another one finishes, so a queue that went quiet would otherwise keep them forever.
 * Idempotent by nature: a second run finds less or nothing to delete.
 */
export function createCleanupHandler(deps: CleanupDeps): JobHandler<'maintenance.cleanup'> {
  return async (_data, ctx) => {
    const refreshTokens = await deleteExpiredRefreshTokens(deps.pool, BATCH, ctx.signal);
    const deliveries = await deleteOldWebhookDeliveries(deps.pool, WEBHOOK_DELIVERY_RETENTION_DAYS, BATCH, ctx.signal);
    const outbox = await deleteSentOutboxRows(deps.pool, OUTBOX_RETENTION_DAYS, BATCH, ctx.signal);
    let jobs = 0;
    const retention = jobRetention(deps.config);
    for (const name of queueNames) {
      const queue = deps.queue(name);
      for (const [state, graceMs] of [
        ['completed', retention.removeOnComplete.age * 1000],
        ['failed', retention.removeOnFail.age * 1000],
      ] as const) {
        for (;;) {
          ctx.signal.throwIfAborted();
          const removed = await queue.clean(graceMs, BATCH, state);
          jobs += removed.length;
          if (removed.length < BATCH) break;
        }
      }
    }
    ctx.log.info({ refreshTokens, deliveries, outbox, jobs }, 'clean-up done');
  };
}
