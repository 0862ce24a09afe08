import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectClient,
  defaultMigrationsDir,
  Migrator,
  secretKeyFromHex,
  webhookSecretBox,
  webhookSecretContext,
} from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import type pg from 'pg';
import { runLmsctl, type CliRun } from '../testing/run-cli.js';

const OLD_KEY = '1a'.repeat(32);
const NEW_KEY = '2b'.repeat(32);
const SECRETS = ['legacy-secret-one-0123456789', 'legacy-secret-two-0123456789', 'legacy-secret-three-012345'];
const oldId = secretKeyFromHex(OLD_KEY).id;
const newId = secretKeyFromHex(NEW_KEY).id;

let database: TestDatabase;
let db: pg.Client;
const ids: string[] = [];

interface Row {
  id: string;
  secret: string | null;
  secret_ciphertext: Buffer | null;
  secret_key_id: string | null;
}

async function rows(): Promise<Row[]> {
  const result = await db.query<Row>(
    'SELECT id, secret, secret_ciphertext, secret_key_id FROM webhook_subscriptions ORDER BY id',
  );
  return result.rows;
}

/** The secret each row opens to with `box`, in the order of `ids`. */
async function opened(box: ReturnType<typeof webhookSecretBox>): Promise<string[]> {
  const byId = new Map((await rows()).map((row) => [row.id, row]));
  return ids.map((id) => {
    const row = byId.get(id)!;
    return box!.open({ keyId: row.secret_key_id!, ciphertext: row.secret_ciphertext! }, webhookSecretContext(id));
  });
}

function run(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  return runLmsctl(['webhooks', 'encrypt-secrets', ...args], { env: { DATABASE_URL: database.url, ...env } });
}

function expectNoSecrets(result: CliRun): void {
  const output = `${result.stdout}${result.stderr}`;
  for (const secret of [...SECRETS, OLD_KEY, NEW_KEY]) expect(output).not.toContain(secret);
}

beforeAll(async () => {
  database = await createTestDatabase('webhook_secrets');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  db = await connectClient(database.url);
  // Subscriptions as they were before migration 0011: the secret in plain text.
  for (const secret of SECRETS) {
    const { rows: inserted } = await db.query<{ id: string }>(
      `INSERT INTO webhook_subscriptions (url, events, secret) VALUES ('https://hooks.example.com/x', '{course.completed}', $1) RETURNING id`,
      [secret],
    );
    ids.push(inserted[0]!.id);
  }
});

afterAll(async () => {
  await db?.end();
  await database?.drop();
});

describe('lmsctl webhooks encrypt-secrets', () => {
  it('refuses without WEBHOOK_SECRET_KEY (exit 2), changing nothing', async () => {
    const result = await run({});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(
      'error: WEBHOOK_SECRET_KEY is not set: there is no key to encrypt webhook secrets with; nothing was changed',
    );
    expect((await rows()).map((row) => row.secret).sort()).toEqual([...SECRETS].sort());
  });

  it('encrypts the plain-text secrets in batches and clears them; a second run has nothing to do', async () => {
    const result = await run({ WEBHOOK_SECRET_KEY: OLD_KEY }, '--batch-size', '2', '--json');
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      keyId: oldId,
      previousKeyId: null,
      subscriptions: 3,
      encrypted: 3,
      reencrypted: 0,
      alreadyCurrent: 0,
    });
    expect(result.stderr).toContain('encrypted 2 of 3 webhook secrets');
    expectNoSecrets(result);
    const stored = await rows();
    expect(stored.map((row) => [row.secret, row.secret_key_id])).toEqual(SECRETS.map(() => [null, oldId]));
    for (const row of stored) {
      for (const secret of SECRETS) expect(row.secret_ciphertext!.toString('latin1')).not.toContain(secret);
    }
    expect(await opened(webhookSecretBox({ WEBHOOK_SECRET_KEY: OLD_KEY }))).toEqual(SECRETS);

    const again = await run({ WEBHOOK_SECRET_KEY: OLD_KEY });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toBe(`nothing to do: all 3 webhook secrets are encrypted with key id ${oldId}`);
  });

  it('refuses a new key without the previous one (exit 1, key ids only), then rotates with both', async () => {
    const before = await rows();
    const refused = await run({ WEBHOOK_SECRET_KEY: NEW_KEY });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(
      `error: webhook secrets are encrypted with key id ${oldId}, which is neither WEBHOOK_SECRET_KEY nor WEBHOOK_SECRET_KEY_PREVIOUS (key ids ${newId}); nothing was changed`,
    );
    expect(refused.stderr).toContain('set WEBHOOK_SECRET_KEY_PREVIOUS to the key those secrets were encrypted with');
    expectNoSecrets(refused);
    expect(await rows()).toEqual(before);

    const rotated = await run({ WEBHOOK_SECRET_KEY: NEW_KEY, WEBHOOK_SECRET_KEY_PREVIOUS: OLD_KEY }, '--json');
    expect(rotated.exitCode, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ keyId: newId, previousKeyId: oldId, reencrypted: 3 });
    expectNoSecrets(rotated);
    expect((await rows()).map((row) => row.secret_key_id)).toEqual(SECRETS.map(() => newId));
    // The new key alone opens every secret: the old one can go.
    expect(await opened(webhookSecretBox({ WEBHOOK_SECRET_KEY: NEW_KEY }))).toEqual(SECRETS);

    const human = await run({ WEBHOOK_SECRET_KEY: NEW_KEY, WEBHOOK_SECRET_KEY_PREVIOUS: OLD_KEY });
    expect(human.stdout).toContain(`no secret needs WEBHOOK_SECRET_KEY_PREVIOUS (key id ${oldId}) any more`);
  });

  it('stops with exit 3 on a secret that does not decrypt; its batch is rolled back', async () => {
    // Another row's ciphertext: same key, wrong row.
    await db.query(
      `UPDATE webhook_subscriptions SET secret_ciphertext = (SELECT secret_ciphertext FROM webhook_subscriptions WHERE id = $2)
        WHERE id = $1`,
      [ids[0], ids[1]],
    );
    const before = await rows();
    const result = await run({ WEBHOOK_SECRET_KEY: OLD_KEY, WEBHOOK_SECRET_KEY_PREVIOUS: NEW_KEY }, '--json');
    expect(result.exitCode).toBe(3);
    const error = JSON.parse(result.stdout) as { error: { message: string } };
    expect(error.error.message).toContain(`webhook subscription ${ids[0]} does not decrypt with key id ${newId}`);
    expect(result.stderr.trim().split('\n')[0]).toMatch(/^error: /);
    expectNoSecrets(result);
    // One batch of 100: the rows re-encrypted before the bad one are rolled back with it.
    expect(await rows()).toEqual(before);
  });

  it('refuses a key that is not 64 hex characters without echoing it (exit 1)', async () => {
    const result = await run({ WEBHOOK_SECRET_KEY: 'hunter2-not-a-key' });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('WEBHOOK_SECRET_KEY: must be 64 hex characters');
    expect(result.stderr).not.toContain('hunter2');
  });
});
