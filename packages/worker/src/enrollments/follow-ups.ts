import type pg from 'pg';
import { withTransaction, type WebhookEventType } from '@lms/core';
import { jobIdFor, type JobProducer } from '@lms/core/queue';
import { publishWebhookEvent } from '@lms/core/webhook-events';
import { claimFollowUp, setFollowUpEvent, type EnrollmentSummary, type FollowUpKind } from './enrollment.repository.js';

export interface FollowUpDeps {
  pool: pg.Pool;
  producer: JobProducer;
}

/**
 * Publishes a transition's follow-ups exactly once, however often the job that found the
 * transition runs. In one transaction: claim the transition, queue the follow-up jobs (their
 * fixed job ids and email idempotency keys make a repeat harmless), record the webhook event.
 * - A crash before the commit leaves no claim and no event: the retried job does it all again,
 *   and the jobs already queued are deduplicated by their ids.
 * - After the commit the claim is there: a repeated run publishes nothing.
 * The event's delivery jobs may start before the commit; the webhook handler waits for it.
 */
async function publishOnce(
  deps: FollowUpDeps,
  enrollmentId: string,
  kind: FollowUpKind & WebhookEventType,
  payload: Record<string, unknown>,
  queueJobs: () => Promise<void>,
): Promise<boolean> {
  return withTransaction(deps.pool, async (client) => {
    if (!(await claimFollowUp(client, enrollmentId, kind))) return false;
    await queueJobs();
    const { eventId } = await publishWebhookEvent(client, deps.producer, kind, payload);
    await setFollowUpEvent(client, enrollmentId, kind, eventId);
    return true;
  });
}

/**
 * A course was completed: render the certificate, congratulate the learner, tell the
 * `course.completed` subscribers. Returns false when this was published before.
 */
export function publishCourseCompleted(deps: FollowUpDeps, enrollment: EnrollmentSummary): Promise<boolean> {
  const { enrollmentId } = enrollment;
  const emailKey = `course-completed-${enrollmentId}`;
  return publishOnce(
    deps,
    enrollmentId,
    'course.completed',
    {
      enrollmentId,
      userId: enrollment.userId,
      courseId: enrollment.courseId,
      completedAt: enrollment.completedAt?.toISOString() ?? null,
    },
    async () => {
      await deps.producer.enqueue(
        'certificate.render',
        { enrollmentId },
        { jobId: jobIdFor('certificate.render', enrollmentId) },
      );
      await deps.producer.enqueue(
        'email.send',
        {
          to: enrollment.email,
          template: 'course-completed',
          props: { name: enrollment.learnerName, courseTitle: enrollment.courseTitle },
          idempotencyKey: emailKey,
        },
        { jobId: jobIdFor('email.send', emailKey) },
      );
    },
  );
}

/** The facts of an issued certificate that its email and event carry. */
export interface IssuedCertificate {
  id: string;
  code: string;
  issuedAt: Date;
}

/**
 * A certificate was issued: email the learner its verification code, tell the
 * `certificate.issued` subscribers. Returns false when this was published before.
 */
export function publishCertificateIssued(
  deps: FollowUpDeps,
  enrollment: EnrollmentSummary,
  certificate: IssuedCertificate,
): Promise<boolean> {
  const { enrollmentId } = enrollment;
  const emailKey = `certificate-issued-${enrollmentId}`;
  return publishOnce(
    deps,
    enrollmentId,
    'certificate.issued',
    {
      certificateId: certificate.id,
      enrollmentId,
      userId: enrollment.userId,
      courseId: enrollment.courseId,
      code: certificate.code,
      issuedAt: certificate.issuedAt.toISOString(),
    },
    async () => {
      await deps.producer.enqueue(
        'email.send',
        {
          to: enrollment.email,
          template: 'certificate-issued',
          props: { name: enrollment.learnerName, courseTitle: enrollment.courseTitle, code: certificate.code },
          idempotencyKey: emailKey,
        },
        { jobId: jobIdFor('email.send', emailKey) },
      );
    },
  );
}
