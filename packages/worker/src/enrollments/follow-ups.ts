import type pg from 'pg';
import { queueJob, withTransaction, type WebhookEventType } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import { publishWebhookEvent, type Queryable } from '@lms/core/webhook-events';
import { claimFollowUp, setFollowUpEvent, type EnrollmentSummary, type FollowUpKind } from './enrollment.repository.js';

export interface FollowUpDeps {
  pool: pg.Pool;
}

/**
 * Publishes a transition's follow-ups exactly once, however often the job that found the
 * transition runs. In one transaction: claim the transition, queue the follow-up jobs through
 * the outbox, record the webhook event (its deliveries through the outbox too).
 * - A crash before the commit leaves no claim, no event and no jobs: the retried job does it all again.
 * - After the commit the claim is there: a repeated run publishes nothing.
 */
async function publishOnce(
  deps: FollowUpDeps,
  enrollmentId: string,
  kind: FollowUpKind & WebhookEventType,
  payload: Record<string, unknown>,
  queueJobs: (tx: Queryable) => Promise<void>,
): Promise<boolean> {
  return withTransaction(deps.pool, async (client) => {
    if (!(await claimFollowUp(client, enrollmentId, kind))) return false;
    await queueJobs(client);
    const { eventId } = await publishWebhookEvent(client, kind, payload);
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
    async (tx) => {
      await queueJob(tx, 'certificate.render', { enrollmentId }, jobIdFor('certificate.render', enrollmentId));
      await queueJob(
        tx,
        'email.send',
        {
          to: enrollment.email,
          template: 'course-completed',
          props: { name: enrollment.learnerName, courseTitle: enrollment.courseTitle },
          idempotencyKey: emailKey,
        },
        jobIdFor('email.send', emailKey),
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
    async (tx) => {
      await queueJob(
        tx,
        'email.send',
        {
          to: enrollment.email,
          template: 'certificate-issued',
          props: { name: enrollment.learnerName, courseTitle: enrollment.courseTitle, code: certificate.code },
          idempotencyKey: emailKey,
        },
        jobIdFor('email.send', emailKey),
      );
    },
  );
}
