import { ConflictError, NotFoundError } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import type pg from 'pg';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import { decodeCursor, toPage, type Page, type PageQuery } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { JobDispatcher } from '../../jobs.js';
import type { CoursesRepository } from '../courses/courses.repository.js';
import { presentEnrollment, type PresentedEnrollment } from './enrollments.presenter.js';
import type { EnrollmentsRepository } from './enrollments.repository.js';

/**
 * Enrolments and progress. Learners enrol in published courses (a second enrol returns the first
 * enrolment) and complete lessons; the worker recomputes progress from the completions, so the
 * enrolment's progress may settle a moment after a completion.
 */
export class EnrollmentsService {
  constructor(
    private readonly enrollments: EnrollmentsRepository,
    private readonly courses: CoursesRepository,
    private readonly jobs: JobDispatcher,
    private readonly metrics: ApiMetrics,
    private readonly db: pg.Pool,
  ) {}

  async enroll(user: AuthUser, courseId: string): Promise<{ created: boolean; enrollment: PresentedEnrollment }> {
    const course = await this.courses.findById(courseId);
    if (!course || course.status !== 'published') throw new NotFoundError('no such published course');
    const { row, created } = await this.enrollments.enroll(user.id, courseId);
    if (created) {
      this.metrics.enrollments.inc();
      const facts = await this.enrollments.mailingFacts(row.id);
      if (facts) {
        await this.jobs.enqueue(
          'email.send',
          {
            to: facts.email,
            template: 'enrollment-confirmation',
            props: { name: facts.name, courseTitle: facts.courseTitle, courseId },
            idempotencyKey: `enrollment-confirmation-${row.id}`,
          },
          { jobId: jobIdFor('email.send', `enrollment-confirmation-${row.id}`) },
        );
      }
      await this.jobs.publish(this.db, 'enrollment.created', { enrollmentId: row.id, userId: user.id, courseId });
    }
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
    if (await this.enrollments.completeLesson(enrollment, lessonId)) {
      this.metrics.lessonCompletions.inc();
      await this.jobs.enqueue('progress.recompute', { enrollmentId });
      await this.jobs.publish(this.db, 'lesson.completed', {
        enrollmentId,
        lessonId,
        userId: user.id,
        courseId: enrollment.course_id,
      });
    }
    return presentEnrollment((await this.enrollments.findById(enrollmentId))!);
  }
}
