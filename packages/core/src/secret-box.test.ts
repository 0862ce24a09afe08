import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';
import type { ConfigError } from './errors.js';
import {
  SecretBox,
  SecretDecryptionError,
  secretKeyFromHex,
  UnknownSecretKeyError,
  webhookSecretBox,
  webhookSecretContext,
} from './secret-box.js';

const KEY = '0f'.repeat(32);
const OTHER = 'e1'.repeat(32);
const SECRET = 'c0ffee'.repeat(10);

describe('SecretBox', () => {
  const box = new SecretBox(secretKeyFromHex(KEY));
  const context = webhookSecretContext('4b9c2f0e-1f6e-4a34-9d55-5f0b1f2e3a4b');

  it('round-trips, with a fresh nonce each time and no trace of the plain text', () => {
    const first = box.seal(SECRET, context);
    const second = box.seal(SECRET, context);
    expect(box.open(first, context)).toBe(SECRET);
    expect(first.ciphertext.equals(second.ciphertext)).toBe(false);
    expect(first.ciphertext.subarray(0, 12).equals(second.ciphertext.subarray(0, 12))).toBe(false);
    // nonce 12 + ciphertext as long as the text + tag 16
    expect(first.ciphertext).toHaveLength(12 + SECRET.length + 16);
    expect(first.ciphertext.toString('latin1')).not.toContain(SECRET);
    expect(first.keyId).toBe(box.current.id);
  });

  it('names a key by a stable id that is neither the setting nor the derived key', () => {
    const key = secretKeyFromHex(KEY);
    expect(key.id).toMatch(/^[0-9a-f]{16}$/);
    expect(secretKeyFromHex(KEY.toUpperCase()).id).toBe(key.id);
    expect(secretKeyFromHex(OTHER).id).not.toBe(key.id);
    expect(KEY).not.toContain(key.id);
    expect(key.key.toString('hex')).not.toBe(KEY);
    expect(() => secretKeyFromHex('abc')).toThrow('a secret key must be 64 hex characters');
  });

  it('refuses another row, a flipped bit, a cut value and an unknown key', () => {
    const sealed = box.seal(SECRET, context);
    expect(() => box.open(sealed, webhookSecretContext('another-row'))).toThrow(SecretDecryptionError);
    const flipped = Buffer.from(sealed.ciphertext);
    flipped[20]! ^= 1;
    expect(() => box.open({ ...sealed, ciphertext: flipped }, context)).toThrow(SecretDecryptionError);
    expect(() => box.open({ ...sealed, ciphertext: sealed.ciphertext.subarray(0, 20) }, context)).toThrow(
      SecretDecryptionError,
    );
    const stranger = new SecretBox(secretKeyFromHex(OTHER));
    const error = (() => {
      try {
        stranger.open(sealed, context);
      } catch (caught) {
        return caught as Error;
      }
      throw new Error('opened with the wrong key');
    })();
    expect(error).toBeInstanceOf(UnknownSecretKeyError);
    expect(error.message).toBe(
      `a secret is encrypted with key id ${box.current.id}, which is not configured (configured: ${stranger.current.id})`,
    );
  });

  it('opens with the previous key during a rotation and seals only with the current one', () => {
    const old = box.seal(SECRET, context);
    const rotating = webhookSecretBox({ WEBHOOK_SECRET_KEY: OTHER, WEBHOOK_SECRET_KEY_PREVIOUS: KEY })!;
    expect(rotating.open(old, context)).toBe(SECRET);
    expect(rotating.keyIds).toEqual([secretKeyFromHex(OTHER).id, box.current.id]);
    const resealed = rotating.seal(SECRET, context);
    expect(resealed.keyId).toBe(secretKeyFromHex(OTHER).id);
    expect(() => box.open(resealed, context)).toThrow(UnknownSecretKeyError);
    expect(webhookSecretBox({})).toBeNull();
  });
});

describe('WEBHOOK_SECRET_KEY settings', () => {
  const problemsOf = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };
  const production = { NODE_ENV: 'production', SECRET_KEY: 'k'.repeat(64) };

  it('is required in production and must be 64 hex characters, never echoed', () => {
    expect(problemsOf(production)).toEqual([
      'WEBHOOK_SECRET_KEY: is required in production (it encrypts webhook signing secrets; e.g. `openssl rand -hex 32`)',
    ]);
    const problems = problemsOf({ ...production, WEBHOOK_SECRET_KEY: 'not-hex-hunter2' });
    expect(problems).toEqual(['WEBHOOK_SECRET_KEY: must be 64 hex characters (e.g. `openssl rand -hex 32`)']);
    expect(problems.join('\n')).not.toContain('hunter2');
    expect(loadConfig({ ...production, WEBHOOK_SECRET_KEY: KEY }).WEBHOOK_SECRET_KEY).toBe(KEY);
  });

  it('is optional outside production; a previous key alone is refused', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).WEBHOOK_SECRET_KEY).toBeUndefined();
    expect(problemsOf({ WEBHOOK_SECRET_KEY_PREVIOUS: KEY })).toEqual([
      'WEBHOOK_SECRET_KEY_PREVIOUS: is only read during a rotation: set WEBHOOK_SECRET_KEY to the new key as well',
    ]);
  });
});
