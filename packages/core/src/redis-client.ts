import { Cluster, Redis } from 'ioredis';
import type { RedisTarget } from './redis.js';

/**
 * The one way the api, the worker and lmsctl open a Redis connection of their own: a plain
 * ioredis client for one server, or an ioredis Cluster that follows the slots (MOVED and ASK
 * redirections, failovers) when REDIS_CLUSTER_NODES is set. Both speak the same commands; keys
 * that meet in one command or transaction must share a hash tag (see `redisHashTag`).
 */
export type RedisClient = Redis | Cluster;

/** Connection behaviour, the same words for both kinds of client. */
export interface RedisClientSettings {
  /** Queue commands while disconnected (ioredis' default) instead of failing them at once. */
  enableOfflineQueue?: boolean;
  /** Retries of a command whose connection dropped; null: retry until it succeeds (BullMQ workers need this). */
  maxRetriesPerRequest?: number | null;
  connectTimeout?: number;
  /** See `defaultRedisSocketTimeoutMs`. */
  socketTimeout?: number;
  /** Delay before reconnect attempt `attempt` (ms), or null to give up. */
  retryStrategy?: (attempt: number) => number | null;
  /** Connect on the first command (or `connect()`) instead of at once. */
  lazyConnect?: boolean;
}

export function createRedisClient(target: RedisTarget, settings: RedisClientSettings = {}): RedisClient {
  const defined = Object.fromEntries(
    Object.entries(settings).filter(([, value]) => value !== undefined),
  ) as RedisClientSettings;
  if (!target.clusterNodes) return new Redis({ ...target.connection, ...defined });
  // Not host, port and db: those name one server, and a cluster has only database 0.
  const { username, password, tls } = target.connection;
  const credentials = { ...(username ? { username } : {}), ...(password ? { password } : {}), ...(tls ? { tls } : {}) };
  const { enableOfflineQueue, retryStrategy, lazyConnect, ...perNode } = defined;
  return new Cluster(
    target.clusterNodes.map((node) => ({ host: node.host, port: node.port })),
    {
      // Every node connection: who we are, TLS, and the timeouts.
      redisOptions: { ...credentials, ...perNode },
      ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
      // The cluster as a whole reconnects (all seeds unreachable) on this schedule.
      ...(retryStrategy ? { clusterRetryStrategy: retryStrategy } : {}),
      ...(lazyConnect === undefined ? {} : { lazyConnect }),
      // The slot map comes from CLUSTER SLOTS; a node busy with a failover may take longer than
      // ioredis' 1 s to answer it.
      slotsRefreshTimeout: 2000,
    },
  );
}

/** Whether `client` talks to a Redis Cluster. */
export function isRedisCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * Resolves when Redis answers: a PING to the server, or to every master of a cluster (a master
 * that does not answer leaves its slots, and every key in them, unusable).
 */
export async function pingRedis(client: RedisClient): Promise<void> {
  if (!isRedisCluster(client)) {
    await client.ping();
    return;
  }
  const masters = client.nodes('master');
  if (masters.length === 0) throw new Error('no Redis Cluster master is known yet');
  await Promise.all(masters.map((node) => node.ping()));
}
