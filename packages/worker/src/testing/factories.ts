import { randomBytes } from 'node:crypto';
import type { Queryable } from '@lms/core/webhook-events';

const unique = () => randomBytes(4).toString('hex');

/** Builders of the rows the worker reads; each returns ids and makes unique values itself. */
export async function insertUser(
  db: Queryable,
  options: { name?: string; email?: string; role?: 'admin' | 'instructor' | 'student' } = {},
): Promise<{ id: string; email: string; name: string }> {
  const email = options.email ?? `user-${unique()}@example.com`;
  const name = options.name ?? 'Ada Lovelace';
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, 'x', $3) RETURNING id`,
    [email, name, options.role ?? 'student'],
  );
  return { id: rows[0]!.id, email, name };
}

export async function insertCourse(
  db: Queryable,
  options: { title?: string; lessons?: number; quizzes?: number } = {},
): Promise<{ id: string; title: string; lessonIds: string[]; quizIds: string[] }> {
  const instructor = await insertUser(db, { role: 'instructor', name: 'Grace Hopper' });
  const title = options.title ?? `Course ${unique()}`;
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO courses (instructor_id, title, status, published_at) VALUES ($1, $2, 'published', now()) RETURNING id`,
    [instructor.id, title],
  );
  const id = rows[0]!.id;
  const lessonIds: string[] = [];
  for (let position = 1; position <= (options.lessons ?? 2); position++) {
    const lesson = await db.query<{ id: string }>(
      `INSERT INTO lessons (course_id, position, title) VALUES ($1, $2, $3) RETURNING id`,
      [id, position, `Lesson ${position}`],
    );
    lessonIds.push(lesson.rows[0]!.id);
  }
  const quizIds: string[] = [];
  for (let index = 1; index <= (options.quizzes ?? 0); index++) {
    const quiz = await db.query<{ id: string }>(
      `INSERT INTO quizzes (course_id, title, pass_mark) VALUES ($1, $2, 50) RETURNING id`,
      [id, `Quiz ${index}`],
    );
    quizIds.push(quiz.rows[0]!.id);
  }
  return { id, title, lessonIds, quizIds };
}

export async function enroll(
  db: Queryable,
  userId: string,
  courseId: string,
  options: { idleDays?: number } = {},
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO enrollments (user_id, course_id, last_activity_at)
     VALUES ($1, $2, now() - make_interval(days => $3)) RETURNING id`,
    [userId, courseId, options.idleDays ?? 0],
  );
  return rows[0]!.id;
}

export async function completeLessons(db: Queryable, enrollmentId: string, lessonIds: string[]): Promise<void> {
  for (const lessonId of lessonIds) {
    await db.query('INSERT INTO lesson_completions (enrollment_id, lesson_id) VALUES ($1, $2)', [
      enrollmentId,
      lessonId,
    ]);
  }
}

export async function attemptQuiz(
  db: Queryable,
  options: { quizId: string; userId: string; enrollmentId: string; passed: boolean },
): Promise<void> {
  await db.query(
    `INSERT INTO quiz_attempts (quiz_id, user_id, enrollment_id, answers, score, passed) VALUES ($1, $2, $3, '[]', $4, $5)`,
    [options.quizId, options.userId, options.enrollmentId, options.passed ? 80 : 20, options.passed],
  );
}

/** A learner enrolled in a course they have finished every lesson of, marked completed. */
export async function completedEnrollment(
  db: Queryable,
  options: { name?: string; courseTitle?: string } = {},
): Promise<{
  enrollmentId: string;
  user: { id: string; email: string; name: string };
  courseId: string;
  courseTitle: string;
}> {
  const user = await insertUser(db, { name: options.name });
  const course = await insertCourse(db, { title: options.courseTitle, lessons: 1 });
  const enrollmentId = await enroll(db, user.id, course.id);
  await completeLessons(db, enrollmentId, course.lessonIds);
  await db.query(`UPDATE enrollments SET status = 'completed', completed_at = now(), progress = 100 WHERE id = $1`, [
    enrollmentId,
  ]);
  return { enrollmentId, user, courseId: course.id, courseTitle: course.title };
}

export async function insertSubscription(
  db: Queryable,
  options: { url: string; events: string[]; secret: string; consecutiveFailures?: number },
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO webhook_subscriptions (url, events, secret, consecutive_failures) VALUES ($1, $2, $3, $4) RETURNING id`,
    [options.url, options.events, options.secret, options.consecutiveFailures ?? 0],
  );
  return rows[0]!.id;
}
