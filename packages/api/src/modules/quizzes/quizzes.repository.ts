import type pg from 'pg';
import { maybeOne, one, queueJob, withTransaction } from '@lms/core';
import { jobIdFor } from '@lms/core/queue';
import type { LaggingReads } from '../../db/read-router.js';
import type { RevealAnswers } from './quizzes.schema.js';

export interface QuizRow {
  id: string;
  course_id: string;
  title: string;
  pass_mark: number;
  max_attempts: number;
  cooldown_seconds: number;
  reveal_answers: RevealAnswers;
  created_at: Date;
}

export interface QuestionRow {
  id: string;
  quiz_id: string;
  position: number;
  prompt: string;
  options: string[];
  correct_option: number;
}

export interface QuizSummaryRow extends QuizRow {
  questions: number;
}

const QUIZ_COLUMNS = 'id, course_id, title, pass_mark, max_attempts, cooldown_seconds, reveal_answers, created_at';

/** An enrolment's attempts at one quiz so far. */
export interface AttemptStanding {
  used: number;
  /** Whether any of them passed. */
  passed: boolean;
  /** Seconds until the cooldown after the latest attempt is over; 0 when it is. */
  waitSeconds: number;
}

/**
 * Taking an attempt, on the one connection of a transaction that holds the enrolment's row lock:
 * simultaneous attempts of one learner queue behind it, so each counts the ones committed before
 * it and together they never exceed the quiz's limit.
 */
export class AttemptTransaction {
  constructor(private readonly client: pg.PoolClient) {}

  /** Locks the learner's enrolment in the course (not a cancelled one); null when there is none. */
  async lockEnrollment(userId: string, courseId: string): Promise<string | null> {
    const result = await this.client.query<{ id: string }>(
      `SELECT id FROM enrollments WHERE user_id = $1 AND course_id = $2 AND status <> 'cancelled' FOR UPDATE`,
      [userId, courseId],
    );
    return maybeOne(result)?.id ?? null;
  }

  /**
   * Times here are clock_timestamp(), not now(): now() is when the transaction began, possibly
   * before it waited for the lock behind an attempt that then committed a later time.
   */
  async standing(enrollmentId: string, quizId: string, cooldownSeconds: number): Promise<AttemptStanding> {
    const result = await this.client.query<{ used: number; passed: boolean; wait_seconds: number }>(
      `SELECT count(*)::int AS used, coalesce(bool_or(passed), false) AS passed,
              greatest(0, ceil(extract(epoch FROM max(created_at) + make_interval(secs => $3) - clock_timestamp())))::int
                AS wait_seconds
         FROM quiz_attempts WHERE enrollment_id = $1 AND quiz_id = $2`,
      [enrollmentId, quizId, cooldownSeconds],
    );
    const row = one(result);
    return { used: row.used, passed: row.passed, waitSeconds: row.wait_seconds };
  }

  async insert(attempt: {
    quizId: string;
    userId: string;
    enrollmentId: string;
    answers: number[];
    score: number;
    passed: boolean;
  }): Promise<{ id: string; created_at: Date }> {
    const inserted = await this.client.query<{ id: string; created_at: Date }>(
      `INSERT INTO quiz_attempts (quiz_id, user_id, enrollment_id, answers, score, passed, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp()) RETURNING id, created_at`,
      [
        attempt.quizId,
        attempt.userId,
        attempt.enrollmentId,
        JSON.stringify(attempt.answers),
        attempt.score,
        attempt.passed,
      ],
    );
    await this.client.query('UPDATE enrollments SET last_activity_at = now() WHERE id = $1', [attempt.enrollmentId]);
    return one(inserted);
  }

  /** Queues the recompute of the enrolment's progress through the outbox, committed with the attempt. */
  async queueRecompute(enrollmentId: string, attemptId: string): Promise<void> {
    await queueJob(
      this.client,
      'progress.recompute',
      { enrollmentId },
      jobIdFor('progress.recompute', enrollmentId, 'attempt', attemptId),
    );
  }
}

/**
 * All SQL about quizzes, their questions and attempts. A quiz and its questions, attempts and
 * enrolments decide attempts (a write) and use the primary; only the list of a course's quizzes
 * may use the replica.
 */
export class QuizzesRepository {
  constructor(private readonly db: { primary: pg.Pool; read: LaggingReads }) {}

  /** A quiz and all its questions, in one transaction. */
  async insert(quiz: {
    courseId: string;
    title: string;
    passMark: number;
    maxAttempts: number;
    cooldownSeconds: number;
    revealAnswers: RevealAnswers;
    questions: Array<{ prompt: string; options: string[]; correctOption: number }>;
  }): Promise<{ quiz: QuizRow; questions: QuestionRow[] }> {
    return withTransaction(this.db.primary, async (client) => {
      const inserted = await client.query<QuizRow>(
        `INSERT INTO quizzes (course_id, title, pass_mark, max_attempts, cooldown_seconds, reveal_answers)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${QUIZ_COLUMNS}`,
        [quiz.courseId, quiz.title, quiz.passMark, quiz.maxAttempts, quiz.cooldownSeconds, quiz.revealAnswers],
      );
      const row = one(inserted);
      const questions = await client.query<QuestionRow>(
        `INSERT INTO quiz_questions (quiz_id, position, prompt, options, correct_option)
         SELECT $1, q.ordinality, q.value->>'prompt', q.value->'options', (q.value->>'correctOption')::int
           FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS q(value, ordinality)
         RETURNING id, quiz_id, position, prompt, options, correct_option`,
        [row.id, JSON.stringify(quiz.questions)],
      );
      return { quiz: row, questions: questions.rows.sort((a, b) => a.position - b.position) };
    });
  }

  /** The quizzes of a course, read for `reader` (null: signed out). */
  async listForCourse(courseId: string, reader: string | null): Promise<QuizSummaryRow[]> {
    const { rows } = await this.db.read.query<QuizSummaryRow>(
      `SELECT q.id, q.course_id, q.title, q.pass_mark, q.max_attempts, q.cooldown_seconds, q.reveal_answers,
              q.created_at, count(x.id)::int AS questions
         FROM quizzes q LEFT JOIN quiz_questions x ON x.quiz_id = q.id
        WHERE q.course_id = $1 GROUP BY q.id ORDER BY q.created_at, q.id`,
      [courseId],
      reader,
    );
    return rows;
  }

  async find(id: string): Promise<{ quiz: QuizRow; questions: QuestionRow[] } | null> {
    const found = await this.db.primary.query<QuizRow>(`SELECT ${QUIZ_COLUMNS} FROM quizzes WHERE id = $1`, [id]);
    const quiz = maybeOne(found);
    if (!quiz) return null;
    const questions = await this.db.primary.query<QuestionRow>(
      `SELECT id, quiz_id, position, prompt, options, correct_option FROM quiz_questions WHERE quiz_id = $1 ORDER BY position`,
      [id],
    );
    return { quiz, questions: questions.rows };
  }

  /** The learner's active enrolment in the course, if any. */
  async enrollmentOf(userId: string, courseId: string): Promise<string | null> {
    const result = await this.db.primary.query<{ id: string }>(
      `SELECT id FROM enrollments WHERE user_id = $1 AND course_id = $2 AND status <> 'cancelled'`,
      [userId, courseId],
    );
    return maybeOne(result)?.id ?? null;
  }

  /** Runs `work` in one transaction with the attempt queries; see AttemptTransaction. */
  inAttemptTransaction<T>(work: (tx: AttemptTransaction) => Promise<T>): Promise<T> {
    return withTransaction(this.db.primary, (client) => work(new AttemptTransaction(client)));
  }
}
