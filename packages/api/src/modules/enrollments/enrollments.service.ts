import { ConflictError, NotFoundError, queueJob, withTransaction } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import { publishWebhookEvent } from '@lms/core/webhook-events';
import type pg from 'pg';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import { decodeCursor, toPage, type Page, type PageQuery } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { CoursesRepository } from '../courses/courses.repository.js';
import { presentEnrollment, type PresentedEnrollment } from './enrollments.presenter.js';
import type { EnrollmentsRepository } from './enrollments.repository.js';

/**
 * Enrolments and progress. Learners enrol in published courses (a second enrol returns the first
 * enrolment) and complete lessons; the worker recomputes progress from the completions, so the
 * enrolment's progress may settle a moment after a completion. The jobs a change causes go
 * through the outbox in the change's own transaction: committed together, or not at all.
 */
export class EnrollmentsService {
  constructor(
    private readonly enrollments: EnrollmentsRepository,
    private readonly courses: CoursesRepository,
    private readonly metrics: ApiMetrics,
    private readonly db: pg.Pool,
  ) {}

  async enroll(user: AuthUser, courseId: string): Promise<{ created: boolean; enrollment: PresentedEnrollment }> {
    const course = await this.courses.findById(courseId);
    if (!course || course.status !== 'published') throw new NotFoundError('no such published course');
    const { row, created } = await withTransaction(this.db, async (tx) => {
      const enrolled = await this.enrollments.enroll(user.id, courseId, tx);
      if (!enrolled.created) return enrolled;
      const { id } = enrolled.row;
      const facts = await this.enrollments.mailingFacts(id, tx);
      if (facts) {
        const idempotencyKey = `enrollment-confirmation-${id}`;
        await queueJob(
          tx,
          'email.send',
          {
            to: facts.email,
            template: 'enrollment-confirmation',
            props: { name: facts.name, courseTitle: facts.courseTitle, courseId },
            idempotencyKey,
          },
          jobIdFor('email.send', idempotencyKey),
        );
      }
      await publishWebhookEvent(tx, 'enrollment.created', { enrollmentId: id, userId: user.id, courseId });
      return enrolled;
    });
    if (created) this.metrics.enrollments.inc();
    return { created, enrollment: presentEnrollment(row) };
  }

  async list(user: AuthUser, page: PageQuery): Promise<Page<PresentedEnrollment>> {
    const rows = await this.enrollments.listForUser(user.id, page.limit, decodeCursor(page.cursor));
    return toPage(rows, page.limit, presentEnrollment);
  }

  async completeLesson(user: AuthUser, enrollmentId: string, lessonId: string): Promise<PresentedEnrollment> {
    const enrollment = await this.enrollments.findById(enrollmentId);
    // Someone else's enrolment does not exist, as far as this user can tell.
    if (!enrollment || enrollment.user_id !== user.id) throw new NotFoundError('no such enrolment');
    if (enrollment.status === 'cancelled') throw new ConflictError('this enrolment was cancelled');
    if (!(await this.enrollments.lessonBelongsTo(lessonId, enrollment.course_id))) {
      throw new NotFoundError('no such lesson in this course');
    }
    const completed = await withTransaction(this.db, async (tx) => {
      if (!(await this.enrollments.completeLesson(enrollment, lessonId, tx))) return false;
      // One recompute per completion: completing the lesson again is not a new completion.
      await queueJob(
        tx,
        'progress.recompute',
        { enrollmentId },
        jobIdFor('progress.recompute', enrollmentId, 'lesson', lessonId),
      );
      await publishWebhookEvent(tx, 'lesson.completed', {
        enrollmentId,
        lessonId,
        userId: user.id,
        courseId: enrollment.course_id,
      });
      return true;
    });
    if (completed) this.metrics.lessonCompletions.inc();
    return presentEnrollment((await this.enrollments.findById(enrollmentId))!);
  }
}
