import { z } from 'zod';
import { rowId } from './ids.js';

/**
 * The job contract shared by the producers (api, lmsctl) and the consumer (worker): queue
 * names, job names and their payload schemas. Nothing else in the code base spells a job or
 * queue name as a string.
 */
export const queueNames = ['emails', 'progress', 'certificates', 'webhooks'] as const;
export type QueueName = (typeof queueNames)[number];

export const emailTemplates = [
  'welcome',
  'enrollment-confirmation',
  'course-completed',
  'certificate-issued',
  'inactivity-reminder',
] as const;
export type EmailTemplate = (typeof emailTemplates)[number];

export const webhookEventTypes = [
  'enrollment.created',
  'lesson.completed',
  'course.completed',
  'certificate.issued',
] as const;
export type WebhookEventType = (typeof webhookEventTypes)[number];

export const jobSchemas = {
  'email.send': z.object({
    to: z.email(),
    template: z.enum(emailTemplates),
    props: z.record(z.string(), z.unknown()),
    /** One email per key, however often the job runs. */
    idempotencyKey: z.string().min(1),
  }),
  'progress.recompute': z.object({ enrollmentId: rowId }),
  'certificate.render': z.object({ enrollmentId: rowId }),
  'webhook.deliver': z.object({ subscriptionId: rowId, eventId: rowId }),
  /**
   * Periodic (the worker's scheduler): deletes expired refresh tokens, old webhook delivery
   * records and finished jobs past their retention.
   */
  'maintenance.cleanup': z.object({}),
  /**
   * Periodic (the worker's scheduler): queues one `email.send` inactivity reminder per active
   * enrolment without activity for INACTIVITY_REMINDER_DAYS.
   */
  'email.inactivity-reminders': z.object({}),
  /**
   * Periodic (the worker's scheduler): queues a `progress.recompute` for every active enrolment
   * with a lesson completed or a quiz passed after its progress was last recomputed (a recompute
   * lost before the outbox existed, or a Redis that forgot its jobs).
   */
  'progress.reconcile': z.object({}),
} as const;

export type JobName = keyof typeof jobSchemas;
export type JobOf<N extends JobName> = z.infer<(typeof jobSchemas)[N]>;
export const jobNames = Object.keys(jobSchemas) as JobName[];

export const queueOf = {
  'email.send': 'emails',
  'progress.recompute': 'progress',
  'certificate.render': 'certificates',
  'webhook.deliver': 'webhooks',
  // Clean-ups are short batched deletes that nobody waits for: the certificates queue is the
  // low-volume, latency-tolerant one, so they never delay a learner's progress update (progress)
  // nor queue behind slow receivers and their 10 s timeouts (webhooks) or SMTP (emails).
  'maintenance.cleanup': 'certificates',
  // The reminder scan only produces emails: it runs beside the email.send jobs it queues.
  'email.inactivity-reminders': 'emails',
  // Beside the recomputes it queues.
  'progress.reconcile': 'progress',
} as const satisfies Record<JobName, QueueName>;

/** The jobs the worker's scheduler fires periodically (BullMQ job schedulers); nobody else queues them. */
export const periodicJobNames = [
  'maintenance.cleanup',
  'email.inactivity-reminders',
  'progress.reconcile',
] as const satisfies readonly JobName[];
export type PeriodicJobName = (typeof periodicJobNames)[number];

/** Parses a payload for `name`, throwing a ZodError that names the offending fields. */
export function parseJobData<N extends JobName>(name: N, data: unknown): JobOf<N> {
  return jobSchemas[name].parse(data) as JobOf<N>;
}

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(jobSchemas, name);
}

export function isQueueName(name: string): name is QueueName {
  return (queueNames as readonly string[]).includes(name);
}
