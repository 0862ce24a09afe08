import { AppError, ForbiddenError, NotFoundError, ValidationError } from '@lms/core';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { CoursesRepository } from '../courses/courses.repository.js';
import { canManage } from '../courses/courses.service.js';
import { presentAttempt, presentQuiz, presentQuizSummary } from './quizzes.presenter.js';
import type { QuizRow, QuizzesRepository } from './quizzes.repository.js';
import type { AttemptBody, CreateQuizBody } from './quizzes.schema.js';

/** 409: the learner has no attempts left at this quiz, or has seen its answers. */
export class QuizClosedError extends AppError {
  constructor(message: string) {
    super(message, { status: 409, code: 'quiz_attempts_exhausted' });
  }
}

/** 429 with Retry-After: the quiz's cooldown since the learner's last attempt is not over. */
export class QuizCooldownError extends AppError {
  constructor(readonly retryAfterSeconds: number) {
    super(`wait ${retryAfterSeconds} s before your next attempt at this quiz`, { status: 429, code: 'quiz_cooldown' });
  }
}

/** The score (0–100, rounded) of answers against the correct options, one per question, in order. */
export function scoreAnswers(correctOptions: readonly number[], answers: readonly number[]): number {
  const correct = correctOptions.filter((option, index) => option === answers[index]).length;
  return Math.round((correct / correctOptions.length) * 100);
}

/**
 * Whether the learner may see which answers were right. Until then the score is all they get: with
 * attempts left, a per-question verdict would hand them the key for the next attempt.
 */
export function answersRevealed(
  quiz: Pick<QuizRow, 'reveal_answers'>,
  standing: { passed: boolean; remaining: number },
) {
  switch (quiz.reveal_answers) {
    case 'never':
      return false;
    case 'after_pass':
      return standing.passed;
    case 'after_last_attempt':
      return standing.passed || standing.remaining === 0;
  }
}

/**
 * Quizzes: instructors write them, enrolled learners take them. A learner never sees the correct
 * options; attempts are scored here, on the server, from the stored answers. A score counting
 * correct answers is an oracle (change one answer, watch the score), so attempts are limited per
 * enrolment, optionally spaced by a cooldown, and show which answers were right only when the
 * quiz's revealAnswers allows it — after which the quiz takes no more attempts from that learner.
 */
export class QuizzesService {
  constructor(
    private readonly quizzes: QuizzesRepository,
    private readonly courses: CoursesRepository,
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
      maxAttempts: body.maxAttempts,
      cooldownSeconds: body.cooldownSeconds,
      revealAnswers: body.revealAnswers,
      questions: body.questions,
    });
    return presentQuiz(quiz, questions, true);
  }

  async list(user: AuthUser | null, courseId: string) {
    const course = await this.courses.findById(courseId);
    if (!course || (course.status !== 'published' && !canManage(user, course)))
      throw new NotFoundError('no such course');
    return {
      items: (await this.quizzes.listForCourse(courseId, user?.id ?? null)).map(presentQuizSummary),
      nextCursor: null,
    };
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
    const { quiz, questions } = found;
    if (body.answers.length !== questions.length) {
      throw new ValidationError(
        `answers: expected ${questions.length} answers, one per question, got ${body.answers.length}`,
      );
    }
    const score = scoreAnswers(
      questions.map((question) => question.correct_option),
      body.answers,
    );
    const passed = score >= quiz.pass_mark;
    const { attempt, attemptsUsed, passedBefore } = await this.quizzes.inAttemptTransaction(async (tx) => {
      const enrollmentId = await tx.lockEnrollment(user.id, course.id);
      if (!enrollmentId) throw new ForbiddenError('enrol in the course to take its quizzes');
      const standing = await tx.standing(enrollmentId, quizId, quiz.cooldown_seconds);
      if (standing.used >= quiz.max_attempts) {
        throw new QuizClosedError(`you have used all ${quiz.max_attempts} attempts at this quiz`);
      }
      if (answersRevealed(quiz, { passed: standing.passed, remaining: quiz.max_attempts - standing.used })) {
        throw new QuizClosedError('you passed this quiz and have seen its answers; it takes no more attempts');
      }
      if (standing.waitSeconds > 0) throw new QuizCooldownError(standing.waitSeconds);
      const attempt = await tx.insert({
        quizId,
        userId: user.id,
        enrollmentId,
        answers: body.answers,
        score,
        passed,
      });
      // Progress counts a quiz once it is passed: only its first pass changes it.
      if (passed && !standing.passed) await tx.queueRecompute(enrollmentId, attempt.id);
      return { attempt, attemptsUsed: standing.used + 1, passedBefore: standing.passed };
    });
    this.metrics.quizAttempts.inc({ passed: String(passed) });
    const remaining = quiz.max_attempts - attemptsUsed;
    const revealed = answersRevealed(quiz, { passed: passed || passedBefore, remaining });
    return presentAttempt({
      id: attempt.id,
      quiz,
      score,
      passed,
      createdAt: attempt.created_at,
      attemptsUsed,
      nextAttemptAt:
        remaining > 0 && !revealed && quiz.cooldown_seconds > 0
          ? new Date(attempt.created_at.getTime() + quiz.cooldown_seconds * 1000)
          : null,
      review: revealed ? { questions, answers: body.answers } : null,
    });
  }
}
