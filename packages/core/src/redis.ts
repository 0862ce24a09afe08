/**
 * Connection settings for Redis clients (ioredis, BullMQ) from a `redis://` or `rediss://` URL,
 * as a plain object: BullMQ and ioredis type their options separately, and a literal satisfies both.
 */
export interface RedisConnectionOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
}

/**
 * How long a Redis connection of the worker waits for a reply to what it sent before it drops the
 * socket and reconnects (ioredis `socketTimeout`). ioredis' `connectTimeout` ends once TCP
 * connects: a connection whose peer accepted it and then never answered (a Redis going away
 * while the reconnect landed, a half-open socket) otherwise waits in its handshake forever, and
 * every command on it fails with "Stream isn't writeable" long after Redis is back. Longer than
 * any blocking read BullMQ sends (at most 10 s), so an idle worker's wait for jobs never trips it.
 */
export const defaultRedisSocketTimeoutMs = 30_000;

export function redisConnectionOptions(url: string): RedisConnectionOptions {
  const parsed = new URL(url);
  const options: RedisConnectionOptions = {
    host: decodeURIComponent(parsed.hostname).replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  const db = parsed.pathname.replace(/^\//, '');
  if (db) options.db = Number(db);
  if (parsed.protocol === 'rediss:') options.tls = {};
  return options;
}

/** One `host:port` of REDIS_CLUSTER_NODES. */
export interface RedisNodeAddress {
  host: string;
  port: number;
}

const NODE_ADDRESS = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/;

/**
 * Parses REDIS_CLUSTER_NODES: seeds written `host:port`, separated by commas (IPv6 addresses in
 * brackets, `[fd00::1]:6379`). The client learns the rest of the cluster from any seed that
 * answers. Throws an Error whose message says what is wrong with which entry.
 */
export function parseRedisClusterNodes(text: string): RedisNodeAddress[] {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error('must list at least one host:port');
  return entries.map((entry) => {
    const match = NODE_ADDRESS.exec(entry);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65_535) {
      throw new Error(`"${entry}" is not host:port (e.g. redis-1:6379; IPv6 in brackets, [fd00::1]:6379)`);
    }
    return { host: match[1] ?? match[2]!, port };
  });
}

/**
 * The hash tag of a Redis key: the text between the first `{` and the first `}` after it, when
 * not empty. Redis Cluster places keys by their tag alone, so keys sharing one are in one slot and
 * may meet in one command, transaction or script.
 */
export function redisHashTag(key: string): string | null {
  const open = key.indexOf('{');
  if (open === -1) return null;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : null;
}

/**
 * Root of the API's own Redis keys (cache, rate limits, token deny-list) in the deployment whose
 * queues live under `queuePrefix`: that name without its braces, then `:` (`{lms}` → `lms:`).
 * Deployments that share a Redis keep their queues apart with QUEUE_PREFIX (else their workers
 * would take each other's jobs); the API's keys follow it, so one API never serves another's
 * cached catalogue, counts its logins or reads its deny-list. The braces go because the first tag
 * in a key decides its cluster slot, and these keys carry their own (per course, per client).
 */
export function apiRedisKeyPrefix(queuePrefix: string): string {
  return `${queuePrefix.replace(/[{}]/g, '')}:`;
}

/**
 * Where a process's Redis clients connect: one server (`connection`), or, with `clusterNodes`, a
 * Redis Cluster found from those seeds — `connection` then gives only the user name, password and
 * TLS every node is reached with.
 */
export interface RedisTarget {
  connection: RedisConnectionOptions;
  clusterNodes?: readonly RedisNodeAddress[];
}

/** The Redis the configuration names: REDIS_CLUSTER_NODES when set, else REDIS_URL. */
export function redisTarget(config: {
  REDIS_URL: string;
  REDIS_CLUSTER_NODES?: readonly RedisNodeAddress[] | undefined;
}): RedisTarget {
  const connection = redisConnectionOptions(config.REDIS_URL);
  return config.REDIS_CLUSTER_NODES?.length ? { connection, clusterNodes: config.REDIS_CLUSTER_NODES } : { connection };
}

/** `host:port` of a node, IPv6 in brackets. */
export function formatRedisNode(node: RedisNodeAddress): string {
  return node.host.includes(':') ? `[${node.host}]:${node.port}` : `${node.host}:${node.port}`;
}

/** The target for messages, without credentials: `127.0.0.1:6379` or `Redis Cluster (seeds a:7000, b:7001)`. */
export function describeRedisTarget(target: RedisTarget): string {
  if (target.clusterNodes) return `Redis Cluster (seeds ${target.clusterNodes.map(formatRedisNode).join(', ')})`;
  return formatRedisNode(target.connection);
}
