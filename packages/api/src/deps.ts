import type pg from 'pg';
import {
  apiRedisKeyPrefix,
  createLogger,
  createPool,
  defaultRedisSocketTimeoutMs,
  redisTarget,
  type Config,
  type Logger,
} from '@lms/core';
import { createRedisClient, type RedisClient } from '@lms/core/redis-client';
import { ReadRouter } from './db/read-router.js';
import { RecentWrites } from './db/recent-writes.js';
import { ApiMetrics } from './lib/api-metrics.js';

/** Everything the app needs from the outside, created once per process and passed to createApp. */
export interface Deps {
  config: Config & { SECRET_KEY: string };
  logger: Logger;
  db: {
    /** Writes and reads that must see them. */
    primary: pg.Pool;
    /**
     * Reads that may be a few seconds old: the replica (DATABASE_READ_URL) when it answers, keeps
     * up and has the reader's own writes; the primary otherwise, or when there is no replica.
     */
    read: ReadRouter;
  };
  /** A Redis or, with REDIS_CLUSTER_NODES, a Redis Cluster client. */
  redis: RedisClient;
  /** A second Redis connection in subscriber mode (cache invalidations between API processes). */
  subscriber: RedisClient;
  metrics: ApiMetrics;
  /** Key prefix of the cache, the rate limits and the token deny-list in Redis. */
  redisPrefix: string;
}

export interface CreateDepsOptions {
  /**
   * Key prefix of the cache, the rate limits and the deny-list; by default QUEUE_PREFIX's (see
   * `apiRedisKeyPrefix`). Tests give a prefix their clean-up removes.
   */
  redisPrefix?: string;
  /** Injectable for tests: see `defaultRedisSocketTimeoutMs` in core. */
  redisSocketTimeoutMs?: number;
}

/** Opens the pools and the Redis connections for one API process (its jobs go through the outbox, not Redis). */
export function createDeps(
  config: Config & { SECRET_KEY: string; DATABASE_URL: string },
  options: CreateDepsOptions & { logger?: Logger } = {},
): Deps {
  const logger = options.logger ?? createLogger({ name: 'api', level: config.LOG_LEVEL });
  const onIdleClientError = (error: Error) =>
    logger.warn({ err: error }, 'idle database connection failed; it was replaced');
  const primary = createPool({
    connectionString: config.DATABASE_URL,
    config,
    applicationName: 'lms-api',
    onIdleClientError,
  });
  const replica = config.DATABASE_READ_URL
    ? {
        url: config.DATABASE_READ_URL,
        pool: createPool({
          connectionString: config.DATABASE_READ_URL,
          config,
          applicationName: 'lms-api-read',
          onIdleClientError,
        }),
      }
    : null;
  const target = redisTarget(config);
  const settings = {
    // Fail fast while Redis is down (the API keeps serving reads and says so in /ready) and keep
    // reconnecting in the background.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // A reconnect whose peer accepted and never answered would otherwise wait in its handshake
    // forever, and the API would stay degraded long after Redis is back.
    socketTimeout: options.redisSocketTimeoutMs ?? defaultRedisSocketTimeoutMs,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
  };
  const redis = createRedisClient(target, settings);
  redis.on('error', (error: Error) => logger.debug({ err: error }, 'redis connection error'));
  // Subscriber mode takes over a connection; commands cannot share it. It may queue its
  // SUBSCRIBE until Redis answers, and resubscribes after a reconnect.
  const subscriber = createRedisClient(target, { ...settings, enableOfflineQueue: true, maxRetriesPerRequest: null });
  subscriber.on('error', (error: Error) => logger.debug({ err: error }, 'redis subscriber connection error'));
  const metrics = new ApiMetrics();
  // Not one fixed name: every API on a shared Redis would then serve the others' cached pages.
  const redisPrefix = options.redisPrefix ?? apiRedisKeyPrefix(config.QUEUE_PREFIX);
  const read = new ReadRouter({
    primary,
    replica,
    // Without a replica every read sees every write: nothing to mark.
    recentWrites: replica ? new RecentWrites(redis, redisPrefix, ReadRouter.writeMemoryMs(config), logger) : null,
    settings: config,
    metrics,
    logger,
  });
  return {
    config,
    logger,
    db: { primary, read },
    redis,
    subscriber,
    metrics,
    redisPrefix,
  };
}

/** Closes everything createDeps opened. */
export async function closeDeps(deps: Deps): Promise<void> {
  deps.redis.disconnect();
  deps.subscriber.disconnect();
  await deps.db.read.close();
  await deps.db.primary.end();
}
