import { describe, expect, it } from 'vitest';
import { accessTokenKeyId } from './access-token-keys.js';
import { loadConfig } from './config.js';
import type { ConfigError } from './errors.js';

describe('accessTokenKeyId', () => {
  it('is 16 hex characters, the same for the same key, different for another, and shows nothing of the key', () => {
    const key = 'a'.repeat(64);
    const id = accessTokenKeyId(key);
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(accessTokenKeyId(key)).toBe(id);
    expect(accessTokenKeyId('b'.repeat(64))).not.toBe(id);
    expect(accessTokenKeyId('0123456789abcdef'.repeat(4))).not.toContain('0123');
  });
});

describe('SECRET_KEY_PREVIOUS', () => {
  const problemsOf = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };
  const production = { NODE_ENV: 'production', SECRET_KEY: 'k'.repeat(64), WEBHOOK_SECRET_KEY: 'f'.repeat(64) };

  it('follows the rules of SECRET_KEY in production, without echoing the value', () => {
    const problems = problemsOf({ ...production, SECRET_KEY_PREVIOUS: 'hunter2-too-short' });
    expect(problems).toEqual(['SECRET_KEY_PREVIOUS: must be at least 64 characters in production (it has 17)']);
    expect(problems.join('\n')).not.toContain('hunter2');
    expect(loadConfig({ ...production, SECRET_KEY_PREVIOUS: 'p'.repeat(64) }).SECRET_KEY_PREVIOUS).toBe('p'.repeat(64));
  });

  it('is optional, any length outside production, and refused without SECRET_KEY', () => {
    expect(loadConfig({}).SECRET_KEY_PREVIOUS).toBeUndefined();
    expect(loadConfig({ SECRET_KEY: 'dev', SECRET_KEY_PREVIOUS: 'old-dev' }).SECRET_KEY_PREVIOUS).toBe('old-dev');
    expect(problemsOf({ SECRET_KEY_PREVIOUS: 'old-dev' })).toEqual([
      'SECRET_KEY_PREVIOUS: is only read during a rotation: set SECRET_KEY as well',
    ]);
  });
});
