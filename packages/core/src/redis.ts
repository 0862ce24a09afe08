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
