import type { ChalkInstance } from 'chalk';
import { connectClient, webhookSecretBox } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import { encryptWebhookSecrets, type EncryptSecretsResult } from '../webhooks/secret-encryption.js';

export interface EncryptSecretsOptions {
  /** Subscriptions per transaction. */
  batchSize: number;
}

/**
 * `lmsctl webhooks encrypt-secrets`: encrypts the plain-text signing secrets left from before
 * encryption at rest, and re-encrypts those under WEBHOOK_SECRET_KEY_PREVIOUS with
 * WEBHOOK_SECRET_KEY (the second half of a key rotation). Safe to run again at any time.
 */
export async function webhooksEncryptSecrets(
  ctx: CommandContext,
  options: EncryptSecretsOptions,
): Promise<EncryptSecretsResult> {
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 10_000) {
    throw usageError('--batch-size must be a whole number from 1 to 10000');
  }
  const box = webhookSecretBox(ctx.config);
  if (!box) {
    throw usageError(
      'WEBHOOK_SECRET_KEY is not set: there is no key to encrypt webhook secrets with; nothing was changed',
      'set it to 64 hex characters (e.g. `openssl rand -hex 32`), the same value the api and the worker use',
    );
  }
  const client = await connectClient(requireDatabaseUrl(ctx), { applicationName: 'lmsctl webhooks encrypt-secrets' });
  try {
    return await encryptWebhookSecrets(client, box, {
      batchSize: options.batchSize,
      onBatch: (done, of) => ctx.out.info(`encrypted ${done} of ${of} webhook secrets`),
    });
  } finally {
    await client.end();
  }
}

export function renderEncryptSecrets(result: EncryptSecretsResult, style: ChalkInstance): string {
  const changed = result.encrypted + result.reencrypted;
  const summary =
    changed === 0
      ? `${style.green('nothing to do')}: all ${result.subscriptions} webhook secrets are encrypted with key id ${result.keyId}`
      : `${style.green('done')}: ${result.encrypted} encrypted, ${result.reencrypted} re-encrypted, ${result.alreadyCurrent} already current; every webhook secret is encrypted with key id ${result.keyId}`;
  return result.previousKeyId
    ? `${summary}\nno secret needs WEBHOOK_SECRET_KEY_PREVIOUS (key id ${result.previousKeyId}) any more: remove it from the api, the worker and lmsctl`
    : summary;
}
