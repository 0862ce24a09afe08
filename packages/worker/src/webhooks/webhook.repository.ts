import type pg from 'pg';
import { maybeOne, one, type SealedSecret } from '@lms/core';
import type { Queryable } from '@lms/core/webhook-events';

/** A signing secret as stored: sealed (migration 0011), or in plain text from before it. */
export type StoredSecret = { encrypted: SealedSecret } | { plaintext: string };

/** Everything one delivery needs, read in one round trip. */
export interface DeliveryState {
  subscription: { id: string; url: string; secret: StoredSecret; active: boolean } | null;
  event: { id: string; type: string; payload: unknown; createdAt: Date } | null;
  /** A delivery of this event to this subscription already succeeded. */
  succeeded: boolean;
  /** Attempts recorded so far (the next one is this + 1). */
  attempts: number;
}

interface DeliveryStateRow {
  subscription_id: string | null;
  url: string | null;
  secret: string | null;
  secret_ciphertext: Buffer | null;
  secret_key_id: string | null;
  active: boolean | null;
  event_id: string | null;
  type: string | null;
  payload: unknown;
  created_at: Date | null;
  attempts: number;
  succeeded: boolean;
}

export async function loadDeliveryState(
  db: Queryable,
  subscriptionId: string,
  eventId: string,
): Promise<DeliveryState> {
  const result = await db.query<DeliveryStateRow>(
    `SELECT s.id AS subscription_id, s.url, s.secret, s.secret_ciphertext, s.secret_key_id, s.active,
            e.id AS event_id, e.type, e.payload, e.created_at,
            (SELECT coalesce(max(d.attempt), 0)::int FROM webhook_deliveries d
              WHERE d.subscription_id = $1 AND d.event_id = $2) AS attempts,
            EXISTS (SELECT 1 FROM webhook_deliveries d
                     WHERE d.subscription_id = $1 AND d.event_id = $2 AND d.status = 'succeeded') AS succeeded
       FROM (SELECT 1) AS one
       LEFT JOIN webhook_subscriptions s ON s.id = $1
       LEFT JOIN webhook_events e ON e.id = $2`,
    [subscriptionId, eventId],
  );
  // FROM (SELECT 1) with LEFT JOINs: one row even when neither the subscription nor the event exists.
  const row = one(result);
  return {
    subscription:
      row.subscription_id === null
        ? null
        : {
            id: row.subscription_id,
            url: row.url!,
            // The table's check constraint: one of the two forms is always there.
            secret:
              row.secret_ciphertext !== null
                ? { encrypted: { keyId: row.secret_key_id!, ciphertext: row.secret_ciphertext } }
                : { plaintext: row.secret! },
            active: row.active!,
          },
    event:
      row.event_id === null
        ? null
        : { id: row.event_id, type: row.type!, payload: row.payload, createdAt: row.created_at! },
    succeeded: row.succeeded,
    attempts: row.attempts,
  };
}

export interface AttemptRecord {
  subscriptionId: string;
  eventId: string;
  attempt: number;
  succeeded: boolean;
  responseStatus: number | null;
  durationMs: number;
  error: string | null;
}

/**
 * Records one attempt and updates the subscription's failure streak in one transaction: a
 * success resets it, a failure extends it and, at `maxConsecutiveFailures`, disables the
 * subscription with a reason the admin API shows. An attempt already recorded (a run repeated
 * after a crash) changes nothing. Returns whether the subscription is still active.
 */
export async function recordAttempt(
  client: pg.PoolClient,
  record: AttemptRecord,
  maxConsecutiveFailures: number,
): Promise<{ recorded: boolean; active: boolean; consecutiveFailures: number }> {
  const inserted = await client.query(
    `INSERT INTO webhook_deliveries (subscription_id, event_id, attempt, status, response_status, duration_ms, error)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (subscription_id, event_id, attempt) DO NOTHING
     RETURNING id`,
    [
      record.subscriptionId,
      record.eventId,
      record.attempt,
      record.succeeded ? 'succeeded' : 'failed',
      record.responseStatus,
      record.durationMs,
      record.error,
    ],
  );
  const recorded = (inserted.rowCount ?? 0) > 0;
  if (!recorded) {
    const current = await client.query<{ active: boolean; consecutive_failures: number }>(
      'SELECT active, consecutive_failures FROM webhook_subscriptions WHERE id = $1',
      [record.subscriptionId],
    );
    const subscription = maybeOne(current);
    return {
      recorded,
      active: subscription?.active ?? false,
      consecutiveFailures: subscription?.consecutive_failures ?? 0,
    };
  }
  const updated = record.succeeded
    ? await client.query<{ active: boolean; consecutive_failures: number }>(
        `UPDATE webhook_subscriptions SET consecutive_failures = 0 WHERE id = $1
         RETURNING active, consecutive_failures`,
        [record.subscriptionId],
      )
    : await client.query<{ active: boolean; consecutive_failures: number }>(
        `UPDATE webhook_subscriptions
            SET consecutive_failures = consecutive_failures + 1,
                active = active AND consecutive_failures + 1 < $2,
                disabled_at = CASE WHEN active AND consecutive_failures + 1 >= $2 THEN now() ELSE disabled_at END,
                disabled_reason = CASE WHEN active AND consecutive_failures + 1 >= $2
                                       THEN 'disabled after ' || (consecutive_failures + 1) || ' consecutive failed deliveries; last: ' || $3
                                       ELSE disabled_reason END
          WHERE id = $1
          RETURNING active, consecutive_failures`,
        [record.subscriptionId, maxConsecutiveFailures, record.error ?? 'failed'],
      );
  const subscription = maybeOne(updated);
  return {
    recorded,
    active: subscription?.active ?? false,
    consecutiveFailures: subscription?.consecutive_failures ?? 0,
  };
}
