import type pg from 'pg';
import { maybeOne, one, withTransaction } from '@lms/core';

export interface QuizRow {
  id: string;
  course_id: string;
  title: string;
  pass_mark: number;
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

/** All SQL about quizzes, their questions and attempts. */
export class QuizzesRepository {
  constructor(private readonly db: { primary: pg.Pool; read: pg.Pool }) {}

  /** A quiz and all its questions, in one transaction. */
  async insert(quiz: {
    courseId: string;
    title: string;
    passMark: number;
    questions: Array<{ prompt: string; options: string[]; correctOption: number }>;
  }): Promise<{ quiz: QuizRow; questions: QuestionRow[] }> {
    return withTransaction(this.db.primary, async (client) => {
      const inserted = await client.query<QuizRow>(
        `INSERT INTO quizzes (course_id, title, pass_mark) VALUES ($1, $2, $3)
         RETURNING id, course_id, title, pass_mark, created_at`,
        [quiz.courseId, quiz.title, quiz.passMark],
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

  async listForCourse(courseId: string): Promise<QuizSummaryRow[]> {
    const { rows } = await this.db.read.query<QuizSummaryRow>(
      `SELECT q.id, q.course_id, q.title, q.pass_mark, q.created_at, count(x.id)::int AS questions
         FROM quizzes q LEFT JOIN quiz_questions x ON x.quiz_id = q.id
        WHERE q.course_id = $1 GROUP BY q.id ORDER BY q.created_at, q.id`,
      [courseId],
    );
    return rows;
  }

  async find(id: string): Promise<{ quiz: QuizRow; questions: QuestionRow[] } | null> {
    const found = await this.db.primary.query<QuizRow>(
      'SELECT id, course_id, title, pass_mark, created_at FROM quizzes WHERE id = $1',
      [id],
    );
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

  async insertAttempt(attempt: {
    quizId: string;
    userId: string;
    enrollmentId: string;
    answers: number[];
    score: number;
    passed: boolean;
  }): Promise<{ id: string; created_at: Date }> {
    const inserted = await this.db.primary.query<{ id: string; created_at: Date }>(
      `INSERT INTO quiz_attempts (quiz_id, user_id, enrollment_id, answers, score, passed)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at`,
      [
        attempt.quizId,
        attempt.userId,
        attempt.enrollmentId,
        JSON.stringify(attempt.answers),
        attempt.score,
        attempt.passed,
      ],
    );
    await this.db.primary.query('UPDATE enrollments SET last_activity_at = now() WHERE id = $1', [
      attempt.enrollmentId,
    ]);
    return one(inserted);
  }
}
