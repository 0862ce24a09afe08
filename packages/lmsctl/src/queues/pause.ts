import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { maskUrl, queueNames, redisConnectionOptions } from '@lms/core';
import { CliError, ExitCode } from '../errors.js';

export interface PausedQueues {
  /** Queues this call paused (those already paused are left as they were). */
  paused: string[];
  /** Resumes exactly the queues this call paused. */
  resume(): Promise<void>;
}

/** True when Redis at `url` answers a PING within 2 s. */
export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis({
    ...redisConnectionOptions(url),
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * Pauses the job queues (globally, so every worker stops taking jobs) while the database is
 * replaced underneath them. When Redis does not answer: an error if the caller configured
 * REDIS_URL explicitly, else null (there is no queue system to pause).
 */
export async function pauseQueues(
  url: string,
  prefix: string,
  options: { required: boolean },
): Promise<PausedQueues | null> {
  if (!(await redisAnswers(url))) {
    if (!options.required) return null;
    throw new CliError(
      ExitCode.failed,
      `cannot pause the job queues: Redis at ${maskUrl(url)} does not answer`,
      'start Redis, or pass --no-pause-queues to restore while workers keep running',
    );
  }
  const queues = queueNames.map((name) => new Queue(name, { connection: redisConnectionOptions(url), prefix }));
  const paused: Queue[] = [];
  try {
    for (const queue of queues) {
      if (await queue.isPaused()) continue;
      await queue.pause();
      paused.push(queue);
    }
  } catch (error) {
    await Promise.all(paused.map((queue) => queue.resume().catch(() => undefined)));
    await Promise.all(queues.map((queue) => queue.close()));
    throw error;
  }
  return {
    paused: paused.map((queue) => queue.name),
    async resume() {
      try {
        for (const queue of paused) await queue.resume();
      } finally {
        await Promise.all(queues.map((queue) => queue.close()));
      }
    },
  };
}
