import { UnrecoverableError } from 'bullmq';
import type pg from 'pg';
import { ZodError } from 'zod';
import { errorMessage, queueJob, withTransaction, type Config } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import type { JobHandler } from '../job-types.js';
import { findInactiveEnrollments, lockEmailDelivery, markEmailSent, recordEmailFailure } from './email.repository.js';
import { renderEmail } from './email-templates.js';
import type { Mailer } from './mailer.js';

export interface EmailDeps {
  pool: pg.Pool;
  mailer: Mailer;
  config: Pick<Config, 'APP_DOMAIN'>;
}

/**
 * `email.send`: renders the template (text and HTML) and sends it, at most once per
 * idempotency key once sent. The delivery record is locked while the SMTP server takes the
 * message and marked sent in the same transaction; only a crash between the server's "OK" and
 * that commit can send a key twice (at-least-once around a crash, never a repeat after it).
 * A permanent SMTP refusal (5xx) fails the job without retries.
 */
export function createEmailHandler(deps: EmailDeps): JobHandler<'email.send'> {
  const { pool, mailer, config } = deps;
  return async (data, ctx) => {
    const delivery = { key: data.idempotencyKey, template: data.template, recipient: data.to };
    const rendered = renderEmail(data.template, data.props, { appDomain: config.APP_DOMAIN });
    try {
      const outcome = await withTransaction(
        pool,
        async (client) => {
          if ((await lockEmailDelivery(client, delivery)) === 'sent') return 'duplicate';
          const messageId = await mailer.send({
            to: data.to,
            ...rendered,
            headers: { 'X-LMS-Idempotency-Key': data.idempotencyKey },
            signal: ctx.signal,
          });
          await markEmailSent(client, data.idempotencyKey, messageId);
          return 'sent';
        },
        ctx.signal,
      );
      if (outcome === 'duplicate') ctx.log.info('already sent for this idempotency key: not sent again');
      else ctx.log.info({ template: data.template }, 'email sent');
    } catch (error) {
      const message = errorMessage(error);
      await recordEmailFailure(pool, { ...delivery, error: message }, ctx.signal).catch((recordError: Error) =>
        ctx.log.warn({ err: recordError }, 'could not record the failed email attempt'),
      );
      if ((error as { permanent?: boolean }).permanent === true) {
        throw new UnrecoverableError(`the mail server refused the message for good: ${message}`);
      }
      throw error;
    }
  };
}

export interface ReminderDeps {
  pool: pg.Pool;
  config: Pick<Config, 'INACTIVITY_REMINDER_DAYS'>;
}

const REMINDER_BATCH = 500;

/**
 * `email.inactivity-reminders` (periodic): queues (through the outbox) an `inactivity-reminder`
 * email for every active enrolment idle for INACTIVITY_REMINDER_DAYS. The key names the idle
 * spell, so a learner gets one reminder per spell however often the scan runs, and the job id
 * makes a repeated scan queue nothing new.
 */
export function createInactivityRemindersHandler(deps: ReminderDeps): JobHandler<'email.inactivity-reminders'> {
  const { pool, config } = deps;
  return async (_data, ctx) => {
    let after: { at: string; id: string } | undefined;
    let queued = 0;
    for (;;) {
      ctx.signal.throwIfAborted();
      const batch = await findInactiveEnrollments(pool, {
        days: config.INACTIVITY_REMINDER_DAYS,
        limit: REMINDER_BATCH,
        after,
      });
      for (const enrollment of batch) {
        try {
          await queueJob(
            pool,
            'email.send',
            {
              to: enrollment.email,
              template: 'inactivity-reminder',
              props: {
                name: enrollment.name,
                courseTitle: enrollment.courseTitle,
                days: config.INACTIVITY_REMINDER_DAYS,
              },
              idempotencyKey: enrollment.idempotencyKey,
            },
            jobIdFor('email.send', enrollment.idempotencyKey),
          );
          queued++;
        } catch (error) {
          // One address the email schema refuses must not stop everyone else's reminder.
          if (!(error instanceof ZodError)) throw error;
          ctx.log.warn(
            { enrollmentId: enrollment.enrollmentId },
            `no reminder: ${error.issues[0]?.message ?? 'invalid'}`,
          );
        }
      }
      if (batch.length < REMINDER_BATCH) break;
      after = batch.at(-1)!.cursor;
    }
    ctx.log.info({ queued }, 'inactivity reminders queued');
  };
}
