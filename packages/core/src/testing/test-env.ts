import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../config.js';
import { defaultMigrationsDir } from '../migrations/migration-files.js';
import { Migrator } from '../migrations/migrator.js';
import { redisConnectionOptions } from '../redis.js';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from './test-db.js';

/**
 * What an API or worker under test runs on, all of it the test file's own: a migrated throwaway
 * database, a Redis key prefix, and the configuration that points at both.
 */
export interface TestEnv {
  database: TestDatabase;
  /**
   * Root of every Redis key of this environment; `cleanup` removes all keys under
   * `${redisPrefix}:`, so anything else a test keeps in Redis belongs under it too.
   */
  redisPrefix: string;
  /** QUEUE_PREFIX of `vars()` and `config()`: the BullMQ queues of this environment. */
  queuePrefix: string;
  /** The environment variables of a process on this environment (overrides win), for spawning one. */
  vars(overrides?: Record<string, string>): Record<string, string>;
  /** The same, parsed as the process would parse it. */
  config(overrides?: Record<string, string>): Config & { DATABASE_URL: string };
  /** Removes the Redis keys under the prefix (on the test Redis) and drops the database. */
  cleanup(): Promise<void>;
}

/**
 * A migrated throwaway database and a Redis prefix, named after `label`. `defaults` are the
 * settings of the kind of process under test (the API's secret, the worker's retries); a
 * caller's overrides in `vars`/`config` win over them.
 */
export async function createTestEnv(label: string, defaults: Record<string, string> = {}): Promise<TestEnv> {
  const database = await createTestDatabase(label);
  try {
    await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  } catch (error) {
    await database.drop();
    throw error;
  }
  const redisPrefix = testRedisPrefix(label);
  const queuePrefix = `${redisPrefix}:q`;
  const vars = (overrides: Record<string, string> = {}): Record<string, string> => ({
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: queuePrefix,
    LOG_LEVEL: 'silent',
    DB_MAX_OVERFLOW: '8',
    ...defaults,
    ...overrides,
  });
  return {
    database,
    redisPrefix,
    queuePrefix,
    vars,
    config(overrides) {
      const config = loadConfig(vars(overrides));
      if (!config.DATABASE_URL) throw new Error('DATABASE_URL overridden with nothing: a test process needs one');
      return { ...config, DATABASE_URL: config.DATABASE_URL };
    },
    async cleanup() {
      try {
        await deleteKeys(`${redisPrefix}:`);
      } finally {
        await database.drop();
      }
    },
  };
}

/** Deletes every key starting with `prefix` on the test Redis (SCAN, so the server never blocks). */
async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis({ ...redisConnectionOptions(testRedisUrl), lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
