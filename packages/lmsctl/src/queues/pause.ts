import { Redis } from 'ioredis';
import { queueNames, redisConnectionOptions } from '@lms/core';
import { CliError, ExitCode } from '../errors.js';
import { describeRedisSource, openQueues, reachRedis, type RedisSource } from './connection.js';

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
 * replaced underneath them. `source` is REDIS_URL (a node of a Redis Cluster is found to be one)
 * or the cluster of REDIS_CLUSTER_NODES (`redisTarget(config)`). When Redis does not answer: an
 * error if the caller configured it explicitly, else null (there is no queue system to pause).
 */
export async function pauseQueues(
  source: RedisSource,
  prefix: string,
  options: { required: boolean },
): Promise<PausedQueues | null> {
  const target = await reachRedis(source);
  if (!target) {
    if (!options.required) return null;
    throw new CliError(
      ExitCode.failed,
      `cannot pause the job queues: Redis at ${describeRedisSource(source)} does not answer`,
      'start Redis, or pass --no-pause-queues to restore while workers keep running',
    );
  }
  const opened = openQueues(target, prefix, queueNames);
  const { queues } = opened;
  const paused: typeof queues = [];
  try {
    for (const queue of queues) {
      if (await queue.isPaused()) continue;
      await queue.pause();
      paused.push(queue);
    }
  } catch (error) {
    await Promise.all(paused.map((queue) => queue.resume().catch(() => undefined)));
    await opened.close();
    throw error;
  }
  return {
    paused: paused.map((queue) => queue.name),
    async resume() {
      try {
        for (const queue of paused) await queue.resume();
      } finally {
        await opened.close();
      }
    },
  };
}
