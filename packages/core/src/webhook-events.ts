import type { WebhookEventType } from './jobs.js';
import { queueJob, type Queryable } from './outbox.js';
import { one } from './query-result.js';
import { jobIdFor } from './queue.js';

export type { Queryable } from './outbox.js';

/**
 * Records a webhook event and queues one delivery per active subscription to its type, through
 * the outbox: with a transaction's client, the event and its deliveries commit with the change
 * they announce. Shared by the api (enrolments, lesson completions) and the worker (course
 * completion, certificates), so both publish the same way.
 */
export async function publishWebhookEvent(
  db: Queryable,
  type: WebhookEventType,
  payload: Record<string, unknown>,
): Promise<{ eventId: string; deliveries: number }> {
  const event = await db.query<{ id: string }>(
    'INSERT INTO webhook_events (type, payload) VALUES ($1, $2) RETURNING id',
    [type, JSON.stringify(payload)],
  );
  const eventId = one(event).id;
  const subscriptions = await db.query<{ id: string }>(
    'SELECT id FROM webhook_subscriptions WHERE active AND $1 = ANY (events)',
    [type],
  );
  for (const { id } of subscriptions.rows) {
    await queueJob(db, 'webhook.deliver', { subscriptionId: id, eventId }, jobIdFor('webhook.deliver', id, eventId));
  }
  return { eventId, deliveries: subscriptions.rows.length };
}
