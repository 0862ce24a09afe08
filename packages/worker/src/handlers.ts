import type pg from 'pg';
import type { Config, JobName, JobOf } from '@lms/core';
import type { JobProducer } from '@lms/core/queue';
import { createCertificateHandler } from './certificates/certificate.handler.js';
import { createEmailHandler, createInactivityRemindersHandler } from './emails/email.handler.js';
import type { Mailer } from './emails/mailer.js';
import type { JobContext } from './job-types.js';
import { createCleanupHandler } from './maintenance/cleanup.handler.js';
import { createProgressHandler } from './progress/progress.handler.js';
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
  } satisfies { [N in JobName]: (data: JobOf<N>, ctx: JobContext) => Promise<void> };
}
