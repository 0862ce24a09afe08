import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir } from '../migrations/migration-files.js';
import { Migrator } from '../migrations/migrator.js';
import { redisConnectionOptions } from '../redis.js';
import { freePort, listDatabases, testRedisPrefix, testRedisUrl } from './index.js';
import { createTestEnv, type TestEnv } from './test-env.js';

let redis: Redis;

beforeAll(() => {
  redis = new Redis(redisConnectionOptions(testRedisUrl));
});

afterAll(() => {
  redis.disconnect();
});

describe('createTestEnv', () => {
  it('gives a migrated database and a prefix of its own, and settings pointing at both', async () => {
    const env = await createTestEnv('env_settings', { DB_POOL_SIZE: '3', JOB_ATTEMPTS: '4' });
    try {
      const { entries } = await new Migrator({
        connectionString: env.database.url,
        dir: defaultMigrationsDir,
      }).status();
      expect(entries.length).toBeGreaterThan(0);
      expect(entries.filter((entry) => entry.state !== 'applied')).toEqual([]);
      expect(env.queuePrefix.startsWith(`${env.redisPrefix}:`)).toBe(true);
      const config = env.config({ JOB_ATTEMPTS: '5' });
      expect(config).toMatchObject({
        NODE_ENV: 'test',
        DATABASE_URL: env.database.url,
        REDIS_URL: testRedisUrl,
        QUEUE_PREFIX: env.queuePrefix,
        DB_POOL_SIZE: 3,
        // The caller's override wins over the defaults of its kind of process.
        JOB_ATTEMPTS: 5,
      });
      expect(env.vars({ LOG_LEVEL: 'info' })).toMatchObject({
        DATABASE_URL: env.database.url,
        QUEUE_PREFIX: env.queuePrefix,
        LOG_LEVEL: 'info',
        JOB_ATTEMPTS: '4',
      });
    } finally {
      await env.cleanup();
    }
  });

  it('cleans up every key under its prefix and its database, and nothing else', async () => {
    const env: TestEnv = await createTestEnv('env_cleanup');
    // Keys of this test's own beside the environment: one sharing the prefix's characters but
    // not the prefix, one under a different prefix.
    const lookalike = `${env.redisPrefix}0:key`;
    const outside = `${testRedisPrefix('env_outside')}:key`;
    let cleaned = false;
    try {
      const inside = Array.from({ length: 1200 }, (_, index) => `${env.redisPrefix}:many:${index}`);
      await redis.mset(...inside.flatMap((key) => [key, '1']), `${env.queuePrefix}:emails:id`, '1');
      await redis.mset(lookalike, '1', outside, '1');
      await env.cleanup();
      cleaned = true;
      expect(await redis.exists(...inside, `${env.queuePrefix}:emails:id`)).toBe(0);
      expect(await redis.exists(lookalike, outside)).toBe(2);
      expect(await listDatabases(env.database.name)).toEqual([]);
    } finally {
      await redis.del(lookalike, outside);
      if (!cleaned) await env.cleanup();
    }
  });
});

describe('freePort', () => {
  it('returns a port on 127.0.0.1 that a server can listen on', async () => {
    const port = await freePort();
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    try {
      expect((server.address() as net.AddressInfo).port).toBe(port);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('testRedisPrefix', () => {
  it('is unique per call and keeps the label to characters QUEUE_PREFIX and SCAN MATCH take literally', () => {
    const prefix = testRedisPrefix('a.b*[c]');
    expect(prefix).toMatch(new RegExp(`^lms_test:a_b_c_:${process.pid}:[0-9a-f]{8}$`));
    expect(testRedisPrefix('a.b*[c]')).not.toBe(prefix);
  });
});
