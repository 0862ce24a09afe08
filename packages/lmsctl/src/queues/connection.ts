import { Queue } from 'bullmq';
import {
  describeRedisTarget,
  maskUrl,
  redisConnectionOptions,
  redisTarget,
  type QueueName,
  type RedisTarget,
} from '@lms/core';
import { createRedisClient, pingRedis, type RedisClient } from '@lms/core/redis-client';
import type { CommandContext } from '../context.js';

/**
 * Where lmsctl finds the queues: a URL (`--redis-url`, or REDIS_URL) or the cluster of
 * REDIS_CLUSTER_NODES. `--redis-url` wins over both; a URL naming a node of a Redis Cluster is
 * used as the cluster's seed (see `reachRedis`).
 */
export type RedisSource = string | RedisTarget;

export function queuesRedisSource(ctx: CommandContext, redisUrl: string | undefined): RedisSource {
  if (redisUrl) return redisUrl;
  return ctx.config.REDIS_CLUSTER_NODES ? redisTarget(ctx.config) : ctx.config.REDIS_URL;
}

/** The source for messages, without its password. */
export function describeRedisSource(source: RedisSource): string {
  return typeof source === 'string' ? maskUrl(source) : describeRedisTarget(source);
}

/** What to check when a source does not answer. */
export function redisSourceHint(source: RedisSource): string {
  return typeof source === 'string'
    ? 'check REDIS_URL (or --redis-url) and that Redis is running'
    : 'check REDIS_CLUSTER_NODES and that every master of the cluster runs';
}

const REACH_TIMEOUT_MS = 5000;

/**
 * The Redis of `source` once it answers — a PING within 2 s of connecting, from every master of a
 * cluster — or null. A URL whose server runs in cluster mode comes back as a cluster seeded with
 * it: commands sent to that one node would otherwise fail with MOVED for every key on another.
 */
export async function reachRedis(source: RedisSource): Promise<RedisTarget | null> {
  const target = typeof source === 'string' ? { connection: redisConnectionOptions(source) } : source;
  const client = createRedisClient(target, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const reach = async (): Promise<RedisTarget> => {
    await client.connect();
    await pingRedis(client);
    if (target.clusterNodes) return target;
    // A Redis that refuses INFO (some managed offerings restrict it) is taken as it is.
    const info = await client.info('cluster').catch(() => '');
    if (!/^cluster_enabled:1/m.test(info)) return target;
    const { host, port } = target.connection;
    return { ...target, clusterNodes: [{ host, port }] };
  };
  try {
    return await Promise.race([
      reach(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer')), REACH_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

export interface OpenQueues {
  queues: Queue[];
  close(): Promise<void>;
}

/**
 * BullMQ queues on `target`: each with a connection of its own on one server; on a cluster all
 * share one cluster client (BullMQ leaves a client it is given open, so `close` ends it).
 */
export function openQueues(
  target: RedisTarget,
  prefix: string,
  names: readonly QueueName[],
  settings: { connectTimeout?: number; maxRetriesPerRequest?: number } = {},
): OpenQueues {
  let cluster: RedisClient | undefined;
  if (target.clusterNodes) {
    cluster = createRedisClient(target, settings);
    cluster.on('error', () => undefined);
  }
  const queues = names.map(
    (name) => new Queue(name, { connection: cluster ?? { ...target.connection, ...settings }, prefix }),
  );
  for (const queue of queues) queue.on('error', () => undefined);
  return {
    queues,
    async close() {
      try {
        await Promise.all(queues.map((queue) => queue.close()));
      } finally {
        cluster?.disconnect();
      }
    },
  };
}
