import type pg from 'pg';
import type { WebhookEventType } from './jobs.js';
import { one } from './query-result.js';
import { jobIdFor, type JobProducer } from './queue.js';

/** Anything that runs parameterised queries: a pool, a pooled client, a client. */
export type Queryable = Pick<pg.Pool, 'query'>;

/**
 * Records a webhook event and queues one delivery per active subscription to its type. Shared
 * by the api (enrolments, lesson completions) and the worker (course completion, certificates),
 * so both publish the same way. Delivery job ids make a repeated publish harmless.
 */
export async function publishWebhookEvent(
  db: Queryable,
  producer: JobProducer,
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
    await producer.enqueue(
      'webhook.deliver',
      { subscriptionId: id, eventId },
      { jobId: jobIdFor('webhook.deliver', id, eventId) },
    );
  }
  return { eventId, deliveries: subscriptions.rows.length };
}
