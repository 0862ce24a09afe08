import type { CourseRow, LessonRow } from './courses.repository.js';

export function presentCourse(row: CourseRow) {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    status: row.status,
    instructorId: row.instructor_id,
    publishedAt: row.published_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}
export type PresentedCourse = ReturnType<typeof presentCourse>;

/** A lesson; its body only for those who may study it (enrolled learners, the owner, admins). */
export function presentLesson(row: LessonRow, withBody: boolean) {
  return {
    id: row.id,
    courseId: row.course_id,
    position: row.position,
    title: row.title,
    body: withBody ? row.body : null,
    createdAt: row.created_at.toISOString(),
  };
}
