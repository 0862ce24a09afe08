import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';
import { ConfigError } from './errors.js';
import { apiRedisKeyPrefix, describeRedisTarget, parseRedisClusterNodes, redisHashTag, redisTarget } from './redis.js';

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected loadConfig to fail');
}

describe('REDIS_CLUSTER_NODES', () => {
  it('reads host:port seeds, IPv6 in brackets, blanks around commas ignored', () => {
    expect(parseRedisClusterNodes('redis-1:7000, 10.0.0.2:7001,[fd00::1]:7002,')).toEqual([
      { host: 'redis-1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: 'fd00::1', port: 7002 },
    ]);
  });

  it('refuses an entry that is not host:port, naming it', () => {
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis-1:7000,redis-2' })).toEqual([
      'REDIS_CLUSTER_NODES: "redis-2" is not host:port (e.g. redis-1:6379; IPv6 in brackets, [fd00::1]:6379)',
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis-1:70000' })[0]).toMatch(/"redis-1:70000" is not host:port/);
  });

  it('switches the target to the cluster, keeping the credentials and TLS of REDIS_URL', () => {
    const config = loadConfig({
      REDIS_URL: 'rediss://app:s3cret@ignored:6379',
      REDIS_CLUSTER_NODES: 'a:7000,b:7001',
    });
    const target = redisTarget(config);
    expect(target.clusterNodes).toEqual([
      { host: 'a', port: 7000 },
      { host: 'b', port: 7001 },
    ]);
    expect(target.connection).toMatchObject({ username: 'app', password: 's3cret', tls: {} });
    expect(describeRedisTarget(target)).toBe('Redis Cluster (seeds a:7000, b:7001)');
    expect(redisTarget(loadConfig({})).clusterNodes).toBeUndefined();
  });

  it('needs a hash-tagged QUEUE_PREFIX and database 0 with a cluster', () => {
    expect(
      problemsOf({ REDIS_CLUSTER_NODES: 'a:7000', QUEUE_PREFIX: 'lms', REDIS_URL: 'redis://:pw@x:6379/2' }),
    ).toEqual([
      'QUEUE_PREFIX: must hold a Redis Cluster hash tag when REDIS_CLUSTER_NODES is set, e.g. {lms}',
      'REDIS_URL: names a database, but a Redis Cluster has only database 0: drop the /N from the URL',
    ]);
    // Without a cluster both are fine, as before.
    expect(() => loadConfig({ QUEUE_PREFIX: 'lms', REDIS_URL: 'redis://x:6379/2' })).not.toThrow();
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'redis://x:6379/0' })).not.toThrow();
  });
});

describe('redisHashTag', () => {
  it('is the text of the first non-empty {…}, as Redis Cluster reads it', () => {
    expect(redisHashTag('{lms}:emails:wait')).toBe('lms');
    expect(redisHashTag('lms:rl:ip:{10.0.0.1}')).toBe('10.0.0.1');
    expect(redisHashTag('a{}b{c}')).toBeNull();
    expect(redisHashTag('no-tag')).toBeNull();
    expect(redisHashTag('{open')).toBeNull();
  });
});

describe('apiRedisKeyPrefix', () => {
  it("is QUEUE_PREFIX without its braces, so each deployment's API keys are its own and keep their own tags", () => {
    // The default deployment keeps the keys it had.
    expect(apiRedisKeyPrefix(loadConfig({}).QUEUE_PREFIX)).toBe('lms:');
    expect(apiRedisKeyPrefix('{staging}')).toBe('staging:');
    expect(apiRedisKeyPrefix('lms_test:api:1:q')).toBe('lms_test:api:1:q:');
    // A course detail is placed by its id in a cluster, not by the deployment's queue tag.
    expect(redisHashTag(`${apiRedisKeyPrefix('{lms-cluster}')}cache:course:{c1}`)).toBe('c1');
  });
});
