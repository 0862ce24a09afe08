import type pg from 'pg';
import { SecretDecryptionError, webhookSecretContext, type SecretBox } from '@lms/core';
import { CliError, ExitCode } from '../errors.js';

/** What `lmsctl webhooks encrypt-secrets` did (key ids and counts only, never a secret). */
export interface EncryptSecretsResult {
  /** Id of WEBHOOK_SECRET_KEY, the key every secret is now encrypted with. */
  keyId: string;
  /** Id of WEBHOOK_SECRET_KEY_PREVIOUS when set: no secret needs it any more. */
  previousKeyId: string | null;
  /** Subscriptions in the table. */
  subscriptions: number;
  /** Secrets that were in plain text and are now encrypted (the plain text cleared). */
  encrypted: number;
  /** Secrets that were encrypted with WEBHOOK_SECRET_KEY_PREVIOUS and now are with WEBHOOK_SECRET_KEY. */
  reencrypted: number;
  /** Secrets that already were encrypted with WEBHOOK_SECRET_KEY: left as they were. */
  alreadyCurrent: number;
}

interface SecretRow {
  id: string;
  secret: string | null;
  secret_ciphertext: Buffer | null;
  secret_key_id: string | null;
}

const FIRST_ID = '00000000-0000-0000-0000-000000000000';

/**
 * Brings every webhook signing secret to WEBHOOK_SECRET_KEY: plain-text ones (from before
 * migration 0011) are encrypted and their plain text cleared; ones under the previous key are
 * re-encrypted. Works in batches, each its own transaction over rows it locks, so the api and
 * the worker keep running, an interruption loses nothing, and running it again only finishes
 * what is left. Before changing anything it checks that every key a row names is configured.
 */
export async function encryptWebhookSecrets(
  client: pg.ClientBase,
  box: SecretBox,
  options: { batchSize: number; onBatch?: (done: number, of: number) => void },
): Promise<EncryptSecretsResult> {
  const census = await client.query<{ key_id: string | null; plaintext: boolean; count: number }>(
    `SELECT secret_key_id AS key_id, (secret IS NOT NULL) AS plaintext, count(*)::int AS count
       FROM webhook_subscriptions GROUP BY 1, 2`,
  );
  const unknown = [
    ...new Set(census.rows.flatMap((row) => (row.key_id !== null && !box.holds(row.key_id) ? [row.key_id] : []))),
  ];
  if (unknown.length > 0) {
    const held = box.keyIds.join(', ');
    throw new CliError(
      ExitCode.failed,
      `webhook secrets are encrypted with key id ${unknown.join(', ')}, which is neither WEBHOOK_SECRET_KEY nor WEBHOOK_SECRET_KEY_PREVIOUS (key ids ${held}); nothing was changed`,
      'set WEBHOOK_SECRET_KEY_PREVIOUS to the key those secrets were encrypted with, then run this again',
    );
  }
  const subscriptions = census.rows.reduce((sum, row) => sum + row.count, 0);
  const todo = census.rows
    .filter((row) => row.plaintext || row.key_id !== box.current.id)
    .reduce((sum, row) => sum + row.count, 0);
  const result: EncryptSecretsResult = {
    keyId: box.current.id,
    previousKeyId: box.keyIds[1] ?? null,
    subscriptions,
    encrypted: 0,
    reencrypted: 0,
    alreadyCurrent: subscriptions - todo,
  };

  // Keyset over ids: each batch starts after the last, so a row that could not be changed is
  // never picked again and the loop ends even while rows are being created.
  let after = FIRST_ID;
  for (;;) {
    await client.query('BEGIN');
    let rows: SecretRow[];
    try {
      ({ rows } = await client.query<SecretRow>(
        `SELECT id, secret, secret_ciphertext, secret_key_id FROM webhook_subscriptions
          WHERE id > $1 AND (secret IS NOT NULL OR secret_key_id IS DISTINCT FROM $2)
          ORDER BY id LIMIT $3 FOR UPDATE`,
        [after, box.current.id, options.batchSize],
      ));
      for (const row of rows) {
        const context = webhookSecretContext(row.id);
        const plaintext =
          row.secret_ciphertext !== null
            ? openRow(box, row.id, { keyId: row.secret_key_id!, ciphertext: row.secret_ciphertext }, context)
            : row.secret!;
        const sealed = box.seal(plaintext, context);
        await client.query(
          `UPDATE webhook_subscriptions SET secret = NULL, secret_ciphertext = $2, secret_key_id = $3 WHERE id = $1`,
          [row.id, sealed.ciphertext, sealed.keyId],
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    for (const row of rows) {
      if (row.secret_ciphertext !== null && row.secret_key_id !== box.current.id) result.reencrypted += 1;
      else result.encrypted += 1;
    }
    if (rows.length === 0) break;
    after = rows.at(-1)!.id;
    options.onBatch?.(result.encrypted + result.reencrypted, todo);
    if (rows.length < options.batchSize) break;
  }
  return result;
}

function openRow(box: SecretBox, id: string, sealed: { keyId: string; ciphertext: Buffer }, context: string): string {
  try {
    return box.open(sealed, context);
  } catch (error) {
    if (error instanceof SecretDecryptionError) {
      throw new CliError(
        ExitCode.verification,
        `the signing secret of webhook subscription ${id} does not decrypt with key id ${sealed.keyId} (altered, or copied from another row); batches before it are done, this one was rolled back`,
        'restore that row from a backup, or delete the subscription and create it again',
      );
    }
    throw error;
  }
}
