import { randomBytes, randomUUID } from 'node:crypto';
import { forbiddenHostReason, NotFoundError, ValidationError, webhookSecretContext, type SecretBox } from '@lms/core';
import { decodeCursor, toPage, type PageQuery } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { AuditRepository } from '../audit/audit.repository.js';
import type { DeliveryRow, SubscriptionRow, WebhooksRepository } from './webhooks.repository.js';
import type { CreateWebhookBody, UpdateWebhookBody } from './webhooks.schema.js';

function presentSubscription(row: SubscriptionRow) {
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    description: row.description,
    active: row.active,
    consecutiveFailures: row.consecutive_failures,
    disabledAt: row.disabled_at?.toISOString() ?? null,
    disabledReason: row.disabled_reason,
    createdAt: row.created_at.toISOString(),
  };
}

function presentDelivery(row: DeliveryRow) {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type,
    attempt: row.attempt,
    status: row.status,
    responseStatus: row.response_status,
    durationMs: row.duration_ms,
    error: row.error,
    createdAt: row.created_at.toISOString(),
  };
}

/** Admin management of webhook subscriptions. The signing secret is shown once, at creation. */
export class WebhooksService {
  constructor(
    private readonly webhooks: WebhooksRepository,
    private readonly audit: AuditRepository,
    private readonly options: {
      production: boolean;
      allowPrivateTargets: boolean;
      /** Seals signing secrets at rest; null only where no WEBHOOK_SECRET_KEY is set (development). */
      secretBox: SecretBox | null;
    },
  ) {}

  private checkTarget(url: string): void {
    const parsed = new URL(url);
    if (this.options.production && parsed.protocol !== 'https:')
      throw new ValidationError('url: must use https in production');
    // Literal addresses and loopback names are refused here; the worker checks every address a
    // name resolves to when it delivers.
    const refused = this.options.allowPrivateTargets ? null : forbiddenHostReason(parsed.hostname);
    if (refused) throw new ValidationError(`url: ${refused}; a webhook must reach a public address`);
  }

  async create(user: AuthUser, body: CreateWebhookBody, requestId?: string) {
    this.checkTarget(body.url);
    const secret = randomBytes(32).toString('hex');
    const id = randomUUID();
    const { secretBox } = this.options;
    const row = await this.webhooks.insert({
      id,
      url: body.url,
      events: body.events,
      description: body.description,
      secret: secretBox ? { encrypted: secretBox.seal(secret, webhookSecretContext(id)) } : { plaintext: secret },
      createdBy: user.id,
    });
    await this.audit.record({
      actorId: user.id,
      action: 'webhook.created',
      entityType: 'webhook_subscription',
      entityId: row.id,
      details: { url: row.url, events: row.events },
      requestId,
    });
    return { ...presentSubscription(row), secret };
  }

  async list(admin: AuthUser) {
    return { items: (await this.webhooks.list(admin.id)).map(presentSubscription), nextCursor: null };
  }

  async get(id: string) {
    const row = await this.webhooks.findById(id);
    if (!row) throw new NotFoundError('no such webhook subscription');
    return presentSubscription(row);
  }

  async update(user: AuthUser, id: string, body: UpdateWebhookBody, requestId?: string) {
    if (body.url) this.checkTarget(body.url);
    const row = await this.webhooks.update(id, body);
    if (!row) throw new NotFoundError('no such webhook subscription');
    await this.audit.record({
      actorId: user.id,
      action: 'webhook.updated',
      entityType: 'webhook_subscription',
      entityId: id,
      details: body,
      requestId,
    });
    return presentSubscription(row);
  }

  async delete(user: AuthUser, id: string, requestId?: string) {
    if (!(await this.webhooks.delete(id))) throw new NotFoundError('no such webhook subscription');
    await this.audit.record({
      actorId: user.id,
      action: 'webhook.deleted',
      entityType: 'webhook_subscription',
      entityId: id,
      requestId,
    });
  }

  async deliveries(admin: AuthUser, id: string, page: PageQuery) {
    if (!(await this.webhooks.findById(id))) throw new NotFoundError('no such webhook subscription');
    const rows = await this.webhooks.deliveries(id, page.limit, decodeCursor(page.cursor), admin.id);
    return toPage(rows, page.limit, presentDelivery);
  }
}
