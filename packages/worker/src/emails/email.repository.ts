import type pg from 'pg';
import { one, withTransaction } from '@lms/core';
import type { Queryable } from '@lms/core/webhook-events';

export type DeliveryStatus = 'sending' | 'sent' | 'failed';

/** How long a failure record waits for a delivery row another transaction holds: briefly. */
const FAILURE_RECORD_LOCK_TIMEOUT = '1s';
/** A one-row upsert; anything longer is a sick database, not worth holding the job for. */
const FAILURE_RECORD_STATEMENT_TIMEOUT = '5s';

/**
 * Takes the delivery record of `key` for the rest of the caller's transaction (creating it as
 * `sending` when new) and returns its status. A concurrent sender of the same key waits here
 * until this transaction ends, then sees `sent`: one email per key. The wait is bounded so a
 * stuck sender fails the other job (it is retried) instead of holding it to the time limit.
 */
export async function lockEmailDelivery(
  client: pg.PoolClient,
  delivery: { key: string; template: string; recipient: string },
): Promise<DeliveryStatus> {
  await client.query(`SET LOCAL lock_timeout = '60s'`);
  await client.query(
    `INSERT INTO email_deliveries (idempotency_key, template, recipient, status)
     VALUES ($1, $2, $3, 'sending')
     ON CONFLICT (idempotency_key) DO NOTHING`,
    [delivery.key, delivery.template, delivery.recipient],
  );
  const result = await client.query<{ status: DeliveryStatus }>(
    'SELECT status FROM email_deliveries WHERE idempotency_key = $1 FOR UPDATE',
    [delivery.key],
  );
  return one(result).status;
}

export async function markEmailSent(client: pg.PoolClient, key: string, messageId: string): Promise<void> {
  await client.query(
    `UPDATE email_deliveries
        SET status = 'sent', sent_at = now(), attempts = attempts + 1, message_id = $2, last_error = NULL
      WHERE idempotency_key = $1`,
    [key, messageId],
  );
}

/**
 * Records a failed attempt (for the operator; a sent record is never downgraded) in a short
 * transaction of its own that never waits long for the row: the attempt may have failed because
 * another transaction holds it (a stuck sender of the same key, which records its own outcome),
 * and waiting behind that lock would hold the job until its hard limit. `signal` (the job's)
 * cancels the record when it fires during it; one that fired already (the attempt was stopped
 * at the soft limit) does not skip the record, which the lock timeout bounds on its own.
 */
export async function recordEmailFailure(
  pool: pg.Pool,
  delivery: { key: string; template: string; recipient: string; error: string },
  signal?: AbortSignal,
): Promise<void> {
  await withTransaction(
    pool,
    async (client) => {
      await client.query(`SET LOCAL lock_timeout = '${FAILURE_RECORD_LOCK_TIMEOUT}'`);
      await client.query(`SET LOCAL statement_timeout = '${FAILURE_RECORD_STATEMENT_TIMEOUT}'`);
      await client.query(
        `INSERT INTO email_deliveries (idempotency_key, template, recipient, status, attempts, last_error)
         VALUES ($1, $2, $3, 'failed', 1, $4)
         ON CONFLICT (idempotency_key) DO UPDATE
            SET status = 'failed', attempts = email_deliveries.attempts + 1, last_error = EXCLUDED.last_error
          WHERE email_deliveries.status <> 'sent'`,
        [delivery.key, delivery.template, delivery.recipient, delivery.error],
      );
    },
    signal?.aborted ? undefined : signal,
  );
}

/** An enrolment due for an inactivity reminder. */
export interface InactiveEnrollment {
  enrollmentId: string;
  email: string;
  name: string;
  courseTitle: string;
  /** `inactivity-reminder-<enrollment>-<last activity, unix seconds>`: one reminder per idle spell. */
  idempotencyKey: string;
  /** Opaque keyset cursor (the exact last_activity_at as text, and the id). */
  cursor: { at: string; id: string };
}

/**
 * Active enrolments of active learners idle for at least `days`, oldest activity first, after
 * `after` (keyset pagination), without a reminder already sent for their current idle spell.
 */
export async function findInactiveEnrollments(
  db: Queryable,
  options: { days: number; limit: number; after?: { at: string; id: string } },
): Promise<InactiveEnrollment[]> {
  const { rows } = await db.query<{
    id: string;
    email: string;
    name: string;
    title: string;
    key: string;
    at: string;
  }>(
    `SELECT e.id, u.email, u.name, c.title, k.key, e.last_activity_at::text AS at
       FROM enrollments e
       JOIN users u ON u.id = e.user_id AND u.active
       JOIN courses c ON c.id = e.course_id
       CROSS JOIN LATERAL (
         SELECT 'inactivity-reminder-' || e.id || '-' || floor(extract(epoch FROM e.last_activity_at))::bigint AS key
       ) k
      WHERE e.status = 'active'
        AND e.last_activity_at < now() - make_interval(days => $1)
        AND (e.last_activity_at, e.id) > ($2::timestamptz, $3::uuid)
        AND NOT EXISTS (SELECT 1 FROM email_deliveries d WHERE d.idempotency_key = k.key AND d.status = 'sent')
      ORDER BY e.last_activity_at, e.id
      LIMIT $4`,
    [
      options.days,
      options.after?.at ?? '-infinity',
      options.after?.id ?? '00000000-0000-0000-0000-000000000000',
      options.limit,
    ],
  );
  return rows.map((row) => ({
    enrollmentId: row.id,
    email: row.email,
    name: row.name,
    courseTitle: row.title,
    idempotencyKey: row.key,
    cursor: { at: row.at, id: row.id },
  }));
}
