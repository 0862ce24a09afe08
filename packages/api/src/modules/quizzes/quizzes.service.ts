import { ForbiddenError, NotFoundError, ValidationError } from '@lms/core';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { JobDispatcher } from '../../jobs.js';
import type { CoursesRepository } from '../courses/courses.repository.js';
import { canManage } from '../courses/courses.service.js';
import { presentQuiz, presentQuizSummary } from './quizzes.presenter.js';
import type { QuizzesRepository } from './quizzes.repository.js';
import type { AttemptBody, CreateQuizBody } from './quizzes.schema.js';

/**
 * Quizzes: instructors write them, enrolled learners take them. A learner never sees the correct
 * options; attempts are scored here, on the server, from the stored answers.
 */
export class QuizzesService {
  constructor(
    private readonly quizzes: QuizzesRepository,
    private readonly courses: CoursesRepository,
    private readonly jobs: JobDispatcher,
    private readonly metrics: ApiMetrics,
  ) {}

  async create(user: AuthUser, courseId: string, body: CreateQuizBody) {
    const course = await this.courses.findById(courseId);
    if (!course || (!canManage(user, course) && course.status !== 'published'))
      throw new NotFoundError('no such course');
    if (!canManage(user, course)) throw new ForbiddenError('only the course instructor or an admin may add quizzes');
    const { quiz, questions } = await this.quizzes.insert({
      courseId,
      title: body.title,
      passMark: body.passMark,
      questions: body.questions,
    });
    return presentQuiz(quiz, questions, true);
  }

  async list(user: AuthUser | null, courseId: string) {
    const course = await this.courses.findById(courseId);
    if (!course || (course.status !== 'published' && !canManage(user, course)))
      throw new NotFoundError('no such course');
    return { items: (await this.quizzes.listForCourse(courseId)).map(presentQuizSummary), nextCursor: null };
  }

  async get(user: AuthUser, quizId: string) {
    const found = await this.quizzes.find(quizId);
    const course = found ? await this.courses.findById(found.quiz.course_id) : null;
    if (!found || !course) throw new NotFoundError('no such quiz');
    if (canManage(user, course)) return presentQuiz(found.quiz, found.questions, true);
    if (course.status !== 'published') throw new NotFoundError('no such quiz');
    if (!(await this.quizzes.enrollmentOf(user.id, course.id)))
      throw new ForbiddenError('enrol in the course to take its quizzes');
    return presentQuiz(found.quiz, found.questions, false);
  }

  async attempt(user: AuthUser, quizId: string, body: AttemptBody) {
    const found = await this.quizzes.find(quizId);
    const course = found ? await this.courses.findById(found.quiz.course_id) : null;
    if (!found || !course || (course.status !== 'published' && !canManage(user, course)))
      throw new NotFoundError('no such quiz');
    const enrollmentId = await this.quizzes.enrollmentOf(user.id, course.id);
    if (!enrollmentId) throw new ForbiddenError('enrol in the course to take its quizzes');
    const { questions } = found;
    if (body.answers.length !== questions.length) {
      throw new ValidationError(
        `answers: expected ${questions.length} answers, one per question, got ${body.answers.length}`,
      );
    }
    const correct = questions.filter((question, index) => question.correct_option === body.answers[index]).length;
    const score = Math.round((correct / questions.length) * 100);
    const passed = score >= found.quiz.pass_mark;
    const attempt = await this.quizzes.insertAttempt({
      quizId,
      userId: user.id,
      enrollmentId,
      answers: body.answers,
      score,
      passed,
    });
    this.metrics.quizAttempts.inc({ passed: String(passed) });
    await this.jobs.enqueue('progress.recompute', { enrollmentId });
    return { id: attempt.id, quizId, score, passed, createdAt: attempt.created_at.toISOString() };
  }
}
