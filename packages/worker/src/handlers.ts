import type pg from 'pg';
import type { Config, JobName, JobOf } from '@lms/core';
import type { JobProducer } from '@lms/core/queue';
import { createCertificateHandler } from './certificates/certificate.handler.js';
import { createEmailHandler, createInactivityRemindersHandler } from './emails/email.handler.js';
import type { Mailer } from './emails/mailer.js';
import type { JobContext } from './job-types.js';
import { createCleanupHandler } from './maintenance/cleanup.handler.js';
import { createProgressHandler } from './progress/progress.handler.js';
import { createReconcileHandler } from './progress/reconcile.handler.js';
import { createWebhookHandler } from './webhooks/webhook.handler.js';

/** What the handlers work with; one of each per process. */
export interface HandlerDeps {
  config: Config;
  pool: pg.Pool;
  producer: JobProducer;
  mailer: Mailer;
}

/** Every job of the contract mapped to its handler (a job name without one does not compile). */
export function createHandlers(deps: HandlerDeps) {
  return {
    'email.send': createEmailHandler(deps),
    'progress.recompute': createProgressHandler(deps),
    'certificate.render': createCertificateHandler(deps),
    'webhook.deliver': createWebhookHandler(deps),
    'maintenance.cleanup': createCleanupHandler({ ...deps, queue: (name) => deps.producer.queue(name) }),
    'email.inactivity-reminders': createInactivityRemindersHandler(deps),
    'progress.reconcile': createReconcileHandler(deps),
  } satisfies { [N in JobName]: (data: JobOf<N>, ctx: JobContext) => Promise<void> };
}

/**
 * Whether a job abandoned at its hard time limit is retried (with its backoff) or failed for
 * good, for every job of the contract (a job name without a decision does not compile). The
 * abandoned run may still be going, so `true` only for handlers that are idempotent and
 * transactional: every effect commits in a database transaction that locks what it changes, so
 * the abandoned run either rolls back or commits once, and the retry waits on its locks and then
 * finds the work done. Anything with an effect outside the database fails for good there.
 */
export const hardLimitRetries = {
  // SMTP cannot be rolled back: the abandoned run may still be handing the message over.
  'email.send': false,
  // One locked recount; follow-ups claimed once (enrollment_follow_ups).
  'progress.recompute': true,
  // The certificate row and its PDF commit together; follow-ups claimed once.
  'certificate.render': true,
  // The receiver may still be getting the abandoned POST.
  'webhook.deliver': false,
  // Periodic: the next run (hourly, daily) picks up what this one left.
  'maintenance.cleanup': false,
  'email.inactivity-reminders': false,
  'progress.reconcile': false,
} as const satisfies { [N in JobName]: boolean };
