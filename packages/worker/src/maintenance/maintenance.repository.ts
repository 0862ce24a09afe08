import type { Queryable } from '@lms/core/webhook-events';

/**
 * Deletes rows matched by `where` (fixed SQL from this module; values go in `params`) in batches of `batchSize`, each its own short statement, so a
 * large backlog never holds locks or bloats one transaction. Returns how many went.
 */
async function deleteInBatches(
  db: Queryable,
  table: 'refresh_tokens' | 'webhook_deliveries' | 'outbox',
  where: string,
  params: unknown[],
  batchSize: number,
  signal: AbortSignal,
): Promise<number> {
  let total = 0;
  for (;;) {
    signal.throwIfAborted();
    const { rowCount } = await db.query(
      `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE ${where} LIMIT $${params.length + 1})`,
      [...params, batchSize],
    );
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < batchSize) return total;
  }
}

/** Refresh tokens past their expiry (a rotated or revoked one is useless once expired too). */
export function deleteExpiredRefreshTokens(db: Queryable, batchSize: number, signal: AbortSignal): Promise<number> {
  return deleteInBatches(db, 'refresh_tokens', 'expires_at < now()', [], batchSize, signal);
}

/** Webhook delivery records older than `days`. */
export function deleteOldWebhookDeliveries(
  db: Queryable,
  days: number,
  batchSize: number,
  signal: AbortSignal,
): Promise<number> {
  return deleteInBatches(
    db,
    'webhook_deliveries',
    'created_at < now() - make_interval(days => $1)',
    [days],
    batchSize,
    signal,
  );
}

/** Outbox rows relayed more than `days` ago (unsent rows stay, however old). */
export function deleteSentOutboxRows(
  db: Queryable,
  days: number,
  batchSize: number,
  signal: AbortSignal,
): Promise<number> {
  return deleteInBatches(db, 'outbox', 'sent_at < now() - make_interval(days => $1)', [days], batchSize, signal);
}
