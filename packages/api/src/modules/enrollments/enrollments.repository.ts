import type pg from 'pg';
import { maybeOne, one, type Queryable } from '@lms/core';
import type { LaggingReads } from '../../db/read-router.js';
import { keysetPage, type Cursor, type KeysetRow } from '../../lib/pagination.js';

export interface EnrollmentRow {
  id: string;
  user_id: string;
  course_id: string;
  status: 'active' | 'completed' | 'cancelled';
  progress: string;
  enrolled_at: Date;
  completed_at: Date | null;
  last_activity_at: Date;
}

const COLUMNS = 'id, user_id, course_id, status, progress, enrolled_at, completed_at, last_activity_at';

/**
 * All SQL about enrolments and lesson completions. Lookups that decide a write (the enrolment a
 * completion is for) use the primary; only the learner's own list may come from the replica.
 */
export class EnrollmentsRepository {
  constructor(private readonly db: { primary: pg.Pool; read: LaggingReads }) {}

  /**
   * Enrols once: the second call finds the existing enrolment (`created` false). `db` is the
   * primary, or the caller's transaction.
   */
  async enroll(
    userId: string,
    courseId: string,
    db: Queryable = this.db.primary,
  ): Promise<{ row: EnrollmentRow; created: boolean }> {
    const inserted = await db.query<EnrollmentRow>(
      `INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)
       ON CONFLICT (user_id, course_id) DO NOTHING RETURNING ${COLUMNS}`,
      [userId, courseId],
    );
    const created = maybeOne(inserted);
    if (created) return { row: created, created: true };
    const existing = await db.query<EnrollmentRow>(
      `SELECT ${COLUMNS} FROM enrollments WHERE user_id = $1 AND course_id = $2`,
      [userId, courseId],
    );
    return { row: one(existing), created: false };
  }

  async findById(id: string): Promise<EnrollmentRow | null> {
    const result = await this.db.primary.query<EnrollmentRow>(`SELECT ${COLUMNS} FROM enrollments WHERE id = $1`, [id]);
    return maybeOne(result) ?? null;
  }

  /** The learner's enrolments, read for the learner: the replica unless they enrolled or completed a lesson lately. */
  async listForUser(userId: string, limit: number, after: Cursor | null): Promise<Array<EnrollmentRow & KeysetRow>> {
    const page = keysetPage({ sort: 'enrolled_at', id: 'id', after, limit, params: [userId] });
    const { rows } = await this.db.read.query<EnrollmentRow & KeysetRow>(
      `SELECT ${COLUMNS}, ${page.key} FROM enrollments WHERE user_id = $1 AND ${page.where} ${page.orderByLimit}`,
      page.params,
      userId,
    );
    return rows;
  }

  async lessonBelongsTo(lessonId: string, courseId: string): Promise<boolean> {
    const { rowCount } = await this.db.primary.query('SELECT 1 FROM lessons WHERE id = $1 AND course_id = $2', [
      lessonId,
      courseId,
    ]);
    return rowCount === 1;
  }

  /** Records a completion once; true when it is new. Also marks the learner active. */
  async completeLesson(
    enrollment: Pick<EnrollmentRow, 'id' | 'user_id'>,
    lessonId: string,
    db: Queryable = this.db.primary,
  ): Promise<boolean> {
    const { rowCount } = await db.query(
      `INSERT INTO lesson_completions (enrollment_id, lesson_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
      [enrollment.id, lessonId],
    );
    await db.query(
      `WITH touched AS (UPDATE enrollments SET last_activity_at = now() WHERE id = $1)
       UPDATE users SET last_active_at = now() WHERE id = $2`,
      [enrollment.id, enrollment.user_id],
    );
    return rowCount === 1;
  }

  /** What the confirmation e-mail needs. */
  async mailingFacts(
    enrollmentId: string,
    db: Queryable = this.db.primary,
  ): Promise<{ email: string; name: string; courseTitle: string } | null> {
    const result = await db.query<{ email: string; name: string; course_title: string }>(
      `SELECT u.email, u.name, c.title AS course_title
         FROM enrollments e JOIN users u ON u.id = e.user_id JOIN courses c ON c.id = e.course_id
        WHERE e.id = $1`,
      [enrollmentId],
    );
    const row = maybeOne(result);
    return row ? { email: row.email, name: row.name, courseTitle: row.course_title } : null;
  }
}
