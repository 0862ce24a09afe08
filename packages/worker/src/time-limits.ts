import { queueNames, type Config, type QueueName } from '@lms/core';

/** A queue's time limits, in milliseconds. */
export interface TimeLimits {
  /** The handler's abort signal fires: it should stop cleanly. */
  softMs: number;
  /** The run is abandoned and the job fails; the worker slot is free again. */
  hardMs: number;
}

/**
 * Per-queue limits that differ from JOB_SOFT_TIME_LIMIT_SECONDS / JOB_HARD_TIME_LIMIT_SECONDS.
 * A progress recompute is a handful of indexed queries that take milliseconds: one still running
 * after a minute waits on a lock or a sick database, and freeing its slot keeps the other
 * learners' progress moving. PDFs, SMTP and webhook receivers keep the configured defaults.
 */
export const queueTimeLimitOverrides: Partial<Record<QueueName, { softSeconds: number; hardSeconds: number }>> = {
  progress: { softSeconds: 60, hardSeconds: 90 },
};

/**
 * The limits of every queue: the override table where it has an entry, else the configured
 * defaults. A hard limit at or below the soft one would leave the handler no time to stop, so it
 * is refused.
 */
export function resolveTimeLimits(
  config: Pick<Config, 'JOB_SOFT_TIME_LIMIT_SECONDS' | 'JOB_HARD_TIME_LIMIT_SECONDS'>,
  overrides: Partial<Record<QueueName, { softSeconds: number; hardSeconds: number }>> = queueTimeLimitOverrides,
): Record<QueueName, TimeLimits> {
  const limits = {} as Record<QueueName, TimeLimits>;
  for (const queue of queueNames) {
    const softSeconds = overrides[queue]?.softSeconds ?? config.JOB_SOFT_TIME_LIMIT_SECONDS;
    const hardSeconds = overrides[queue]?.hardSeconds ?? config.JOB_HARD_TIME_LIMIT_SECONDS;
    if (hardSeconds <= softSeconds) {
      throw new Error(
        `the ${queue} queue's hard time limit (${hardSeconds} s) must be longer than its soft limit (${softSeconds} s): check JOB_SOFT_TIME_LIMIT_SECONDS and JOB_HARD_TIME_LIMIT_SECONDS`,
      );
    }
    limits[queue] = { softMs: softSeconds * 1000, hardMs: hardSeconds * 1000 };
  }
  return limits;
}

/** Seconds for messages: whole numbers print without decimals, sub-second test limits with them. */
export function formatSeconds(ms: number): string {
  return Number.isInteger(ms / 1000) ? String(ms / 1000) : (ms / 1000).toFixed(1);
}

/** The reason a handler's signal carries when the soft limit fires. */
export class SoftTimeLimitError extends Error {
  constructor(readonly limitMs: number) {
    super(`exceeded the soft time limit of ${formatSeconds(limitMs)} s`);
    this.name = 'SoftTimeLimitError';
  }
}

/**
 * The job ran past its hard limit (and the reason its signal carries when the soft limit had not
 * already fired). The runner retries it only for jobs declared safe to run beside their abandoned
 * run (`hardLimitRetries` in handlers.ts); any other job fails for good, kept for inspection.
 */
export class HardTimeLimitError extends Error {
  constructor(
    jobName: string,
    readonly limitMs: number,
  ) {
    super(`${jobName} exceeded the hard time limit of ${formatSeconds(limitMs)} s`);
    this.name = 'HardTimeLimitError';
  }
}

/** The reason a handler's signal carries when the worker process is told to stop right away. */
export class ShutdownError extends Error {
  constructor() {
    super('the worker is shutting down');
    this.name = 'ShutdownError';
  }
}
