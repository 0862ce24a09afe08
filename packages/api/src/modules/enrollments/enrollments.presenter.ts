import type { EnrollmentRow } from './enrollments.repository.js';

export function presentEnrollment(row: EnrollmentRow) {
  return {
    id: row.id,
    courseId: row.course_id,
    userId: row.user_id,
    status: row.status,
    progress: Number(row.progress),
    enrolledAt: row.enrolled_at.toISOString(),
    completedAt: row.completed_at?.toISOString() ?? null,
    lastActivityAt: row.last_activity_at.toISOString(),
  };
}
export type PresentedEnrollment = ReturnType<typeof presentEnrollment>;
