import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError } from 'bullmq';
import type pg from 'pg';
import { errorMessage, webhookSecretBox, webhookSecretContext, withTransaction, type Config } from '@lms/core';
import type { JobContext, JobHandler } from '../job-types.js';
import { TargetRefusedError } from './ssrf-guard.js';
import { InvalidTargetError, postWebhook } from './webhook-http.js';
import { loadDeliveryState, recordAttempt, type StoredSecret } from './webhook.repository.js';
import { deliveryId, signatureHeader } from './webhook-signature.js';

export interface WebhookDeps {
  pool: pg.Pool;
  config: Pick<
    Config,
    | 'WEBHOOK_TIMEOUT_SECONDS'
    | 'WEBHOOK_MAX_CONSECUTIVE_FAILURES'
    | 'WEBHOOK_ALLOW_PRIVATE_TARGETS'
    | 'WEBHOOK_SECRET_KEY'
    | 'WEBHOOK_SECRET_KEY_PREVIOUS'
  >;
}

/**
 * Deliveries reach the queue through the outbox, after their event committed. A delivery queued
 * before its event committed (by an older release, or by hand) looks again a few times before
 * giving up (the job is then retried with backoff).
 */
const EVENT_WAITS_MS = [50, 150, 300, 500];

type Outcome = 'succeeded' | 'retry' | 'permanent';

/** 2xx succeeds; 408, 429 and 5xx (and network trouble) are worth retrying; other answers are not. */
function classify(status: number | null, error: unknown): Outcome {
  if (error) return error instanceof TargetRefusedError || error instanceof InvalidTargetError ? 'permanent' : 'retry';
  if (status !== null && status >= 200 && status < 300) return 'succeeded';
  if (status === 408 || status === 429 || (status !== null && status >= 500)) return 'retry';
  return 'permanent';
}

/**
 * `webhook.deliver`: POSTs the event JSON, signed, to the subscription's URL and records the
 * attempt. Idempotent: a delivery that already succeeded is not repeated, and each attempt is
 * recorded once. Failures retry with backoff unless they are permanent (refused target, a 4xx
 * other than 408/429) or the failure streak has just disabled the subscription.
 */
export function createWebhookHandler(deps: WebhookDeps): JobHandler<'webhook.deliver'> {
  const { pool, config } = deps;
  const secretBox = webhookSecretBox(config);
  let plaintextNoted = false;
  /**
   * The signing secret in clear, for this delivery only. A secret still in plain text (a row from
   * before encryption) is used as is, noted once per process; one sealed under a key this process
   * lacks fails the attempt with the key ids (never a key), to be retried once the setting is fixed.
   */
  const signingSecret = (id: string, stored: StoredSecret, log: JobContext['log']): string => {
    if ('plaintext' in stored) {
      if (secretBox && !plaintextNoted) {
        plaintextNoted = true;
        log.warn(
          'webhook signing secrets still stored in plain text: run `lmsctl webhooks encrypt-secrets` to encrypt them',
        );
      }
      return stored.plaintext;
    }
    if (!secretBox) {
      throw new Error(
        `the signing secret of webhook subscription ${id} is encrypted (key id ${stored.encrypted.keyId}) but WEBHOOK_SECRET_KEY is not set`,
      );
    }
    return secretBox.open(stored.encrypted, webhookSecretContext(id));
  };
  return async ({ subscriptionId, eventId }, ctx) => {
    let state = await loadDeliveryState(pool, subscriptionId, eventId);
    for (const wait of EVENT_WAITS_MS) {
      if (state.event || !state.subscription) break;
      await sleep(wait, undefined, { signal: ctx.signal });
      state = await loadDeliveryState(pool, subscriptionId, eventId);
    }
    const { subscription, event } = state;
    if (!subscription) {
      ctx.log.info('the subscription was deleted: nothing to deliver');
      return;
    }
    if (!event) {
      throw new Error(
        `webhook event ${eventId} does not exist (yet): its publisher has not committed it, or rolled back`,
      );
    }
    if (state.succeeded) {
      ctx.log.info('already delivered: not sent again');
      return;
    }
    if (!subscription.active) {
      ctx.log.info('the subscription is disabled: not delivered');
      return;
    }

    const body = JSON.stringify({
      id: event.id,
      type: event.type,
      createdAt: event.createdAt.toISOString(),
      data: event.payload,
    });
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'LMS-Webhooks/1',
      'x-lms-event': event.type,
      'x-lms-delivery': deliveryId(subscription.id, event.id),
      'x-lms-signature': signatureHeader(
        signingSecret(subscription.id, subscription.secret, ctx.log),
        body,
        Math.floor(Date.now() / 1000),
      ),
    };
    const started = performance.now();
    let status: number | null = null;
    let failure: unknown = null;
    try {
      const response = await postWebhook({
        url: subscription.url,
        body,
        headers,
        timeoutMs: config.WEBHOOK_TIMEOUT_SECONDS * 1000,
        allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        signal: ctx.signal,
      });
      status = response.status;
    } catch (error) {
      failure = error;
    }
    const durationMs = Math.round(performance.now() - started);
    const outcome = classify(status, failure);
    const reason =
      failure !== null ? errorMessage(failure) : outcome === 'succeeded' ? null : `receiver answered HTTP ${status}`;
    const saved = await withTransaction(
      pool,
      (client) =>
        recordAttempt(
          client,
          {
            subscriptionId: subscription.id,
            eventId: event.id,
            attempt: state.attempts + 1,
            succeeded: outcome === 'succeeded',
            responseStatus: status,
            durationMs,
            error: reason,
          },
          config.WEBHOOK_MAX_CONSECUTIVE_FAILURES,
        ),
      ctx.signal,
    );
    if (outcome === 'succeeded') {
      ctx.log.info({ status, durationMs }, 'webhook delivered');
      return;
    }
    if (!saved.active) {
      throw new UnrecoverableError(
        `${reason}; the subscription is disabled after ${saved.consecutiveFailures} consecutive failed deliveries`,
      );
    }
    if (outcome === 'permanent') throw new UnrecoverableError(`${reason} (not retried)`);
    throw new Error(reason ?? 'delivery failed');
  };
}
