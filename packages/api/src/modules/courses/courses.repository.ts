import type pg from 'pg';
import { maybeOne, one } from '@lms/core';
import type { LaggingReads } from '../../db/read-router.js';
import { keysetPage, type Cursor, type KeysetRow } from '../../lib/pagination.js';

export interface CourseRow {
  id: string;
  instructor_id: string;
  title: string;
  description: string;
  status: 'draft' | 'published' | 'archived';
  published_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface LessonRow {
  id: string;
  course_id: string;
  position: number;
  title: string;
  body: string;
  created_at: Date;
  updated_at: Date;
}

const COURSE = 'id, instructor_id, title, description, status, published_at, created_at, updated_at';
const LESSON = 'id, course_id, position, title, body, created_at, updated_at';

/**
 * All SQL about courses and their lessons. Reads that decide a write (ownership, enrolment) or
 * refill the cache right after a write invalidated it go to the primary: a lagging replica would
 * answer 404 for a course just created, or put the old row back into the cache (the catalogue
 * and course details are served from that cache). Only the uncached list of a user's own courses
 * may use the replica.
 */
export class CoursesRepository {
  constructor(private readonly db: { primary: pg.Pool; read: LaggingReads }) {}

  async insert(course: { instructorId: string; title: string; description: string }): Promise<CourseRow> {
    const result = await this.db.primary.query<CourseRow>(
      `INSERT INTO courses (instructor_id, title, description) VALUES ($1, $2, $3) RETURNING ${COURSE}`,
      [course.instructorId, course.title, course.description],
    );
    return one(result);
  }

  async findById(id: string): Promise<CourseRow | null> {
    const result = await this.db.primary.query<CourseRow>(`SELECT ${COURSE} FROM courses WHERE id = $1`, [id]);
    return maybeOne(result) ?? null;
  }

  /** Published courses, newest first; `limit + 1` rows. */
  async listPublished(limit: number, after: Cursor | null): Promise<Array<CourseRow & KeysetRow>> {
    const page = keysetPage({ sort: 'created_at', id: 'id', after, limit });
    const { rows } = await this.db.primary.query<CourseRow & KeysetRow>(
      `SELECT ${COURSE}, ${page.key} FROM courses WHERE status = 'published' AND ${page.where} ${page.orderByLimit}`,
      page.params,
    );
    return rows;
  }

  /**
   * Every course of an instructor (all courses when `instructorId` is null), any status, as
   * `reader` (who asks) may see it: from the replica unless they changed something lately.
   */
  async listOwned(
    instructorId: string | null,
    limit: number,
    after: Cursor | null,
    reader: string,
  ): Promise<Array<CourseRow & KeysetRow>> {
    const page = keysetPage({ sort: 'created_at', id: 'id', after, limit, params: [instructorId] });
    const { rows } = await this.db.read.query<CourseRow & KeysetRow>(
      `SELECT ${COURSE}, ${page.key} FROM courses WHERE ($1::uuid IS NULL OR instructor_id = $1) AND ${page.where} ${page.orderByLimit}`,
      page.params,
      reader,
    );
    return rows;
  }

  async update(id: string, changes: { title?: string; description?: string }): Promise<CourseRow | null> {
    const result = await this.db.primary.query<CourseRow>(
      `UPDATE courses SET title = coalesce($2, title), description = coalesce($3, description)
        WHERE id = $1 RETURNING ${COURSE}`,
      [id, changes.title ?? null, changes.description ?? null],
    );
    return maybeOne(result) ?? null;
  }

  async publish(id: string): Promise<CourseRow | null> {
    const result = await this.db.primary.query<CourseRow>(
      `UPDATE courses SET status = 'published', published_at = coalesce(published_at, now())
        WHERE id = $1 RETURNING ${COURSE}`,
      [id],
    );
    return maybeOne(result) ?? null;
  }

  async delete(id: string): Promise<boolean> {
    const { rowCount } = await this.db.primary.query('DELETE FROM courses WHERE id = $1', [id]);
    return rowCount === 1;
  }

  async countEnrollments(courseId: string): Promise<number> {
    const result = await this.db.primary.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM enrollments WHERE course_id = $1',
      [courseId],
    );
    return one(result).n;
  }

  async lessons(courseId: string): Promise<LessonRow[]> {
    const { rows } = await this.db.primary.query<LessonRow>(
      `SELECT ${LESSON} FROM lessons WHERE course_id = $1 ORDER BY position`,
      [courseId],
    );
    return rows;
  }

  async countLessons(courseId: string): Promise<number> {
    const result = await this.db.primary.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM lessons WHERE course_id = $1',
      [courseId],
    );
    return one(result).n;
  }

  /** Appends a lesson after the last one (the unique position makes concurrent appends retry). */
  async appendLesson(courseId: string, lesson: { title: string; body: string }): Promise<LessonRow> {
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.db.primary.query<LessonRow>(
          `INSERT INTO lessons (course_id, position, title, body)
           SELECT $1, coalesce(max(position), 0) + 1, $2, $3 FROM lessons WHERE course_id = $1
           RETURNING ${LESSON}`,
          [courseId, lesson.title, lesson.body],
        );
        return one(result);
      } catch (error) {
        if ((error as { code?: string }).code !== '23505' || attempt >= 5) throw error;
      }
    }
  }

  async isEnrolled(courseId: string, userId: string): Promise<boolean> {
    const { rowCount } = await this.db.primary.query(
      `SELECT 1 FROM enrollments WHERE course_id = $1 AND user_id = $2 AND status <> 'cancelled'`,
      [courseId, userId],
    );
    return rowCount === 1;
  }
}
