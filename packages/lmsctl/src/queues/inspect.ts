import type { Queue } from 'bullmq';
import { isQueueName, queueNames, type QueueName } from '@lms/core';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { describeRedisSource, openQueues, queuesRedisSource, reachRedis, redisSourceHint } from './connection.js';

/** Job states `queue list` counts, in the order shown. */

/** Opening the queues and summarising them: shared by the queue commands, `status` and `check`. */

export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'completed',
  'failed',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export interface QueueOptions {
  /** `--redis-url`, else REDIS_CLUSTER_NODES, else REDIS_URL (see `queuesRedisSource`). */
  redisUrl?: string;
  /** `--prefix`, else QUEUE_PREFIX. */
  prefix?: string;
}

/** Opens the named queues after checking Redis answers; closes them when `work` is done. */
export async function withQueues<T>(
  ctx: CommandContext,
  options: QueueOptions,
  names: readonly QueueName[],
  work: (queues: Queue[]) => Promise<T>,
): Promise<T> {
  const source = queuesRedisSource(ctx, options.redisUrl);
  const target = await reachRedis(source);
  if (!target) {
    throw new CliError(
      ExitCode.failed,
      `Redis at ${describeRedisSource(source)} does not answer`,
      redisSourceHint(source),
    );
  }
  const opened = openQueues(target, options.prefix ?? ctx.config.QUEUE_PREFIX, names, {
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
  });
  try {
    return await work(opened.queues);
  } finally {
    await opened.close();
  }
}

/** The queue a user named, or a usage error listing the known ones. */
export function queueNamed(name: string): QueueName {
  if (!isQueueName(name)) throw usageError(`unknown queue "${name}"`, `the queues are: ${queueNames.join(', ')}`);
  return name;
}

export interface QueueSummary {
  name: QueueName;
  paused: boolean;
  counts: Record<JobState, number>;
  workers: number;
  /** How long the oldest waiting job has waited; null when none waits. */
  oldestWaitingMs: number | null;
}

export async function summarize(queue: Queue, now = Date.now()): Promise<QueueSummary> {
  const counts = (await queue.getJobCounts(...JOB_STATES)) as Record<JobState, number>;
  const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
  let workers = 0;
  try {
    workers = await queue.getWorkersCount();
  } catch {
    // Managed Redis without CLIENT LIST: unknown, reported as 0.
  }
  return {
    name: queue.name as QueueName,
    paused: await queue.isPaused(),
    counts,
    workers,
    oldestWaitingMs: oldest ? now - oldest.timestamp : null,
  };
}
