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
