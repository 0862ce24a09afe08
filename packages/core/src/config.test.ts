import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { configFields, loadConfig, secretConfigNames } from './config.js';

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected loadConfig to fail');
}

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      DEBUG: false,
      PORT: 8000,
      METRICS_PATH: '/metrics',
      DB_POOL_SIZE: 20,
      DB_MAX_OVERFLOW: 40,
      REDIS_URL: 'redis://127.0.0.1:6379',
      LMS_BACKUP_DIR: 'backups/db',
    });
    expect(config.DATABASE_URL).toBeUndefined();
  });

  it('every default in the field table is what the schema applies', () => {
    const config = loadConfig({}) as Record<string, unknown>;
    for (const [name, field] of Object.entries(configFields)) {
      if (!('default' in field) || field.default === undefined) continue;
      // The documented default, given explicitly, reads the same as leaving the variable unset.
      const given = loadConfig({ [name]: field.default }) as Record<string, unknown>;
      expect(config[name], name).toEqual(given[name]);
    }
    expect(config).toMatchObject({ ACCESS_TOKEN_TTL: 15 * 60_000, LMS_DRILL_RTO: 4 * 3_600_000 });
  });

  it('treats empty and blank variables as unset', () => {
    expect(loadConfig({ PORT: '', DEBUG: '  ' })).toMatchObject({ PORT: 8000, DEBUG: false });
  });

  it('parses numbers and booleans', () => {
    const config = loadConfig({ PORT: '9001', DEBUG: 'yes', DB_POOL_SIZE: '5', DB_MAX_OVERFLOW: '0' });
    expect(config).toMatchObject({ PORT: 9001, DEBUG: true, DB_POOL_SIZE: 5, DB_MAX_OVERFLOW: 0 });
  });

  it('lists every problem at once, each naming its variable', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      DB_POOL_SIZE: '0',
      DATABASE_URL: 'mysql://x@y/z',
      REDIS_URL: 'localhost:6379',
      NODE_ENV: 'prod',
      METRICS_PATH: 'metrics',
    });
    expect(problems).toHaveLength(6);
    for (const name of ['PORT', 'DB_POOL_SIZE', 'DATABASE_URL', 'REDIS_URL', 'NODE_ENV', 'METRICS_PATH']) {
      expect(
        problems.some((problem) => problem.startsWith(`${name}:`)),
        name,
      ).toBe(true);
    }
  });

  it('refuses a short SECRET_KEY and DEBUG=true in production, together', () => {
    const problems = problemsOf({
      NODE_ENV: 'production',
      SECRET_KEY: 'short-but-secret',
      DEBUG: 'true',
      WEBHOOK_SECRET_KEY: '0'.repeat(64),
    });
    expect(problems).toEqual([
      'SECRET_KEY: must be at least 64 characters in production (it has 16)',
      'DEBUG: must be false in production (it exposes internals)',
    ]);
  });

  it('refuses a query timeout that would fire before the statement timeout', () => {
    expect(problemsOf({ DB_STATEMENT_TIMEOUT_SECONDS: '20', DB_QUERY_TIMEOUT_SECONDS: '20' })).toEqual([
      'DB_QUERY_TIMEOUT_SECONDS: must be greater than DB_STATEMENT_TIMEOUT_SECONDS (20), or 0',
    ]);
    expect(loadConfig({ DB_STATEMENT_TIMEOUT_SECONDS: '20', DB_QUERY_TIMEOUT_SECONDS: '0' })).toMatchObject({
      DB_STATEMENT_TIMEOUT_SECONDS: 20,
      DB_QUERY_TIMEOUT_SECONDS: 0,
    });
    expect(loadConfig({ DB_STATEMENT_TIMEOUT_SECONDS: '0' }).DB_QUERY_TIMEOUT_SECONDS).toBe(15);
  });

  it('requires SECRET_KEY in production and accepts 64 characters', () => {
    const webhookKey = { WEBHOOK_SECRET_KEY: '0'.repeat(64) };
    expect(problemsOf({ NODE_ENV: 'production', ...webhookKey })).toEqual(['SECRET_KEY: is required in production']);
    expect(loadConfig({ NODE_ENV: 'production', SECRET_KEY: 'k'.repeat(64), ...webhookKey }).SECRET_KEY).toHaveLength(
      64,
    );
  });

  it('allows a short key and DEBUG outside production', () => {
    expect(loadConfig({ NODE_ENV: 'staging', SECRET_KEY: 'dev', DEBUG: 'true' }).DEBUG).toBe(true);
  });

  it('never echoes the value of a secret in its messages', () => {
    const problems = problemsOf({
      DATABASE_URL: 'mysql://admin:hunter2@db/lms',
      NODE_ENV: 'production',
      SECRET_KEY: 'hunter2',
    });
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('marks connection URLs and the key as secrets', () => {
    expect(secretConfigNames).toEqual(
      expect.arrayContaining(['SECRET_KEY', 'DATABASE_URL', 'REDIS_URL', 'PROD_DATABASE_URL', 'PROD_REDIS_URL']),
    );
  });
});
