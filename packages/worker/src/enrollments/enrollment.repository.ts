import { maybeOne } from '@lms/core';
import type { Queryable } from '@lms/core/webhook-events';

/** An enrolment with the learner and course facts that emails, events and certificates show. */
export interface EnrollmentSummary {
  enrollmentId: string;
  status: 'active' | 'completed' | 'cancelled';
  completedAt: Date | null;
  userId: string;
  email: string;
  learnerName: string;
  courseId: string;
  courseTitle: string;
}

interface SummaryRow {
  id: string;
  status: EnrollmentSummary['status'];
  completed_at: Date | null;
  user_id: string;
  email: string;
  name: string;
  course_id: string;
  title: string;
}

export async function loadEnrollmentSummary(db: Queryable, enrollmentId: string): Promise<EnrollmentSummary | null> {
  const result = await db.query<SummaryRow>(
    `SELECT e.id, e.status, e.completed_at, u.id AS user_id, u.email, u.name, c.id AS course_id, c.title
       FROM enrollments e
       JOIN users u ON u.id = e.user_id
       JOIN courses c ON c.id = e.course_id
      WHERE e.id = $1`,
    [enrollmentId],
  );
  const row = maybeOne(result);
  if (!row) return null;
  return {
    enrollmentId: row.id,
    status: row.status,
    completedAt: row.completed_at,
    userId: row.user_id,
    email: row.email,
    learnerName: row.name,
    courseId: row.course_id,
    courseTitle: row.title,
  };
}

/** The transitions whose follow-ups are published once (table enrollment_follow_ups). */
export type FollowUpKind = 'course.completed' | 'certificate.issued';

/**
 * Claims the follow-ups of a transition inside the caller's transaction. A concurrent claimer
 * waits on the primary key until this transaction ends, then finds the claim taken: of any
 * number of runs, exactly one committed claim publishes.
 */
export async function claimFollowUp(db: Queryable, enrollmentId: string, kind: FollowUpKind): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO enrollment_follow_ups (enrollment_id, kind) VALUES ($1, $2)
     ON CONFLICT (enrollment_id, kind) DO NOTHING`,
    [enrollmentId, kind],
  );
  return (rowCount ?? 0) > 0;
}

export async function setFollowUpEvent(
  db: Queryable,
  enrollmentId: string,
  kind: FollowUpKind,
  eventId: string,
): Promise<void> {
  await db.query('UPDATE enrollment_follow_ups SET event_id = $3 WHERE enrollment_id = $1 AND kind = $2', [
    enrollmentId,
    kind,
    eventId,
  ]);
}
