import type pg from 'pg';
import { maybeOne, one, type SealedSecret } from '@lms/core';
import type { LaggingReads } from '../../db/read-router.js';
import { keysetPage, type Cursor, type KeysetRow } from '../../lib/pagination.js';

export interface SubscriptionRow {
  id: string;
  url: string;
  events: string[];
  description: string;
  active: boolean;
  consecutive_failures: number;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  attempt: number;
  status: 'succeeded' | 'failed';
  response_status: number | null;
  duration_ms: number;
  error: string | null;
  created_at: Date;
}

const COLUMNS =
  'id, url, events, description, active, consecutive_failures, disabled_at, disabled_reason, created_at, updated_at';

/**
 * All SQL about webhook subscriptions and their delivery records. The lists of subscriptions and
 * deliveries may use the replica; a subscription looked up to change, test or show it uses the primary.
 */
export class WebhooksRepository {
  constructor(private readonly db: { primary: pg.Pool; read: LaggingReads }) {}

  /**
   * The secret is stored either sealed (`encrypted`, the id being part of its associated data, so
   * the caller chooses it) or, only where no key is configured (development), in plain text.
   */
  async insert(subscription: {
    id: string;
    url: string;
    events: string[];
    description: string;
    secret: { plaintext: string } | { encrypted: SealedSecret };
    createdBy: string;
  }): Promise<SubscriptionRow> {
    const { secret } = subscription;
    const result = await this.db.primary.query<SubscriptionRow>(
      `INSERT INTO webhook_subscriptions (id, url, events, description, secret, secret_ciphertext, secret_key_id, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
      [
        subscription.id,
        subscription.url,
        subscription.events,
        subscription.description,
        'plaintext' in secret ? secret.plaintext : null,
        'encrypted' in secret ? secret.encrypted.ciphertext : null,
        'encrypted' in secret ? secret.encrypted.keyId : null,
        subscription.createdBy,
      ],
    );
    return one(result);
  }

  /** Every subscription, read for `reader` (the admin asking). */
  async list(reader: string): Promise<SubscriptionRow[]> {
    const { rows } = await this.db.read.query<SubscriptionRow>(
      `SELECT ${COLUMNS} FROM webhook_subscriptions ORDER BY created_at DESC, id DESC`,
      [],
      reader,
    );
    return rows;
  }

  async findById(id: string): Promise<SubscriptionRow | null> {
    const result = await this.db.primary.query<SubscriptionRow>(
      `SELECT ${COLUMNS} FROM webhook_subscriptions WHERE id = $1`,
      [id],
    );
    return maybeOne(result) ?? null;
  }

  /** Changes a subscription; re-activating one clears its failure streak and disabled note. */
  async update(
    id: string,
    changes: { url?: string; events?: string[]; description?: string; active?: boolean },
  ): Promise<SubscriptionRow | null> {
    const result = await this.db.primary.query<SubscriptionRow>(
      `UPDATE webhook_subscriptions
          SET url = coalesce($2, url), events = coalesce($3, events), description = coalesce($4, description),
              active = coalesce($5, active),
              consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
              disabled_at = CASE WHEN $5 THEN NULL ELSE disabled_at END,
              disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END
        WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, changes.url ?? null, changes.events ?? null, changes.description ?? null, changes.active ?? null],
    );
    return maybeOne(result) ?? null;
  }

  async delete(id: string): Promise<boolean> {
    const { rowCount } = await this.db.primary.query('DELETE FROM webhook_subscriptions WHERE id = $1', [id]);
    return rowCount === 1;
  }

  /** Delivery records of a subscription (the worker writes them), read for `reader` (the admin asking). */
  async deliveries(
    subscriptionId: string,
    limit: number,
    after: Cursor | null,
    reader: string,
  ): Promise<Array<DeliveryRow & KeysetRow>> {
    const page = keysetPage({ sort: 'd.created_at', id: 'd.id', after, limit, params: [subscriptionId] });
    const { rows } = await this.db.read.query<DeliveryRow & KeysetRow>(
      `SELECT d.id, d.event_id, e.type AS event_type, d.attempt, d.status, d.response_status, d.duration_ms, d.error, d.created_at,
              ${page.key}
         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
        WHERE d.subscription_id = $1 AND ${page.where} ${page.orderByLimit}`,
      page.params,
      reader,
    );
    return rows;
  }
}
