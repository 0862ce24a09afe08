import type { JobsOptions, Queue } from 'bullmq';
import type pg from 'pg';
import { periodicJobNames, queueNames, queueOf, type Logger, type PeriodicJobName, type QueueName } from '@lms/core';
import { jobIdFor, type JobProducer } from '@lms/core/queue';
import { sampleOutbox, sampleQueueDepths, type WorkerMetrics } from './metrics.js';

/** When each periodic job fires (cron, UTC). */
export const periodicSchedules: Record<PeriodicJobName, { pattern: string; what: string }> = {
  // Hourly, off the full hour when other systems' jobs pile up.
  'maintenance.cleanup': { pattern: '17 * * * *', what: 'expired refresh tokens, old deliveries, old finished jobs' },
  // Daily in the European morning: a reminder in the inbox when people start their day.
  'email.inactivity-reminders': { pattern: '0 9 * * *', what: 'inactivity reminder emails' },
  // Every 15 minutes: a learner stuck behind a lost recompute waits at most that long (plus the grace).
  'progress.reconcile': { pattern: '*/15 * * * *', what: 'progress recomputes that were never run' },
};

/**
 * The job scheduler id of a periodic job. BullMQ keeps one scheduler per id and derives each
 * run's job id from it and the run's time, so any number of scheduler instances upserting the
 * same ids fire each run once.
 */
export function schedulerIdFor(name: PeriodicJobName): string {
  return jobIdFor(name);
}

/**
 * Creates or updates the BullMQ job schedulers of every periodic job (idempotent). Once
 * registered they live in Redis: the workers of the job's queue fire them, even while no
 * scheduler process runs.
 */
export async function registerJobSchedulers(producer: JobProducer, jobOptions: JobsOptions): Promise<void> {
  const { attempts, backoff, removeOnComplete, removeOnFail } = jobOptions;
  for (const name of periodicJobNames) {
    await producer
      .queue(queueOf[name])
      .upsertJobScheduler(
        schedulerIdFor(name),
        { pattern: periodicSchedules[name].pattern, tz: 'UTC' },
        { name, data: {}, opts: { attempts, backoff, removeOnComplete, removeOnFail } },
      );
  }
}

export interface Scheduler {
  stop(): Promise<void>;
}

/**
 * The scheduler (Celery's beat): registers the job schedulers, then samples the queue depths
 * into `lms_queue_jobs` and the outbox backlog into `lms_outbox_depth` and
 * `lms_outbox_oldest_age_seconds` every `sampleIntervalMs`. The sampling is a read that must land in the
 * registry of the process Prometheus scrapes, so it runs here rather than as a job on whichever
 * worker picks it up; several scheduler instances report the same numbers (dashboards take the max).
 * The outbox is sampled on its own: its numbers matter most while Redis is down.
 */
export async function startScheduler(options: {
  producer: JobProducer;
  pool: pg.Pool;
  jobOptions: JobsOptions;
  metrics: WorkerMetrics;
  logger: Logger;
  sampleIntervalMs?: number;
}): Promise<Scheduler> {
  const { producer, metrics, logger } = options;
  await registerJobSchedulers(producer, options.jobOptions);
  logger.info(
    { schedules: Object.fromEntries(periodicJobNames.map((name) => [name, periodicSchedules[name].pattern])) },
    'job schedulers registered',
  );
  const queues = new Map<QueueName, Queue>(queueNames.map((name) => [name, producer.queue(name)]));
  let running: Promise<void> | undefined;
  let outbox: Promise<void> | undefined;
  const sample = () => {
    // A sample still waiting on a slow Redis (or database) is not doubled up.
    running ??= sampleQueueDepths(metrics, queues)
      .catch((error: Error) => logger.warn({ err: error }, `could not sample the queue depths: ${error.message}`))
      .finally(() => (running = undefined));
    outbox ??= sampleOutbox(metrics, options.pool)
      .catch((error: Error) => logger.warn({ err: error }, `could not sample the outbox: ${error.message}`))
      .finally(() => (outbox = undefined));
  };
  sample();
  const timer = setInterval(sample, options.sampleIntervalMs ?? 15_000);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([running, outbox]);
    },
  };
}
