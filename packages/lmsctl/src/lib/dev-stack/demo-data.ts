import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '@lms/core';

/** What loading the demo data did, with the generated passwords (never for --json). */
export interface SeedResult {
  seeded: boolean;
  reason?: string;
  admin: { email: string; password: string } | null;
  /** Password of every other demo account. */
  demoPassword: string | null;
  counts: { users: number; courses: number; lessons: number; quizzes: number; enrollments: number };
}

const COURSES = [
  { title: 'SQL from zero', topic: 'databases', published: true },
  { title: 'Web APIs that last', topic: 'HTTP APIs', published: true },
  { title: 'Operating PostgreSQL', topic: 'operations', published: true },
  { title: 'Queues and workers', topic: 'background jobs', published: false },
] as const;

function newPassword(): string {
  return randomBytes(12).toString('base64url');
}

/**
 * Loads demo data into an empty database for development: an admin, two instructors, twelve
 * learners, four courses (three published) with lessons and a quiz each, enrolments and some
 * progress, in one transaction. Never over existing users; the callers refuse production.
 * `client` stays open (its owner ends it).
 */
export async function loadDemoData(client: pg.Client): Promise<SeedResult> {
  const { hashPassword } = await import('@lms/core/passwords');
  const empty: SeedResult['counts'] = { users: 0, courses: 0, lessons: 0, quizzes: 0, enrollments: 0 };
  const existing = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
  if (existing.rows[0]!.n > 0) {
    return {
      seeded: false,
      reason: `the database already has ${existing.rows[0]!.n} user(s); demo data goes only into an empty one`,
      admin: null,
      demoPassword: null,
      counts: empty,
    };
  }
  const adminPassword = newPassword();
  const demoPassword = newPassword();
  const [adminHash, demoHash] = await Promise.all([hashPassword(adminPassword), hashPassword(demoPassword)]);
  return await inTransaction(client, async () => {
    const insertUser = async (email: string, name: string, role: string, hash: string) =>
      (
        await client.query<{ id: string }>(
          'INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING id',
          [email, name, hash, role],
        )
      ).rows[0]!.id;
    await insertUser('admin@lms.local', 'LMS Admin', 'admin', adminHash);
    const instructors = [
      await insertUser('ada@lms.local', 'Ada Lovelace', 'instructor', demoHash),
      await insertUser('grace@lms.local', 'Grace Hopper', 'instructor', demoHash),
    ];
    const learners: string[] = [];
    for (let index = 1; index <= 12; index++) {
      learners.push(
        await insertUser(`learner${String(index).padStart(2, '0')}@lms.local`, `Learner ${index}`, 'student', demoHash),
      );
    }
    const counts = { users: 15, courses: 0, lessons: 0, quizzes: 0, enrollments: 0 };
    for (const [index, course] of COURSES.entries()) {
      const courseId = (
        await client.query<{ id: string }>(
          `INSERT INTO courses (instructor_id, title, description, status, published_at)
           VALUES ($1, $2, $3, $4, CASE WHEN $4 = 'published' THEN now() END) RETURNING id`,
          [
            instructors[index % 2],
            course.title,
            `A hands-on course about ${course.topic}.`,
            course.published ? 'published' : 'draft',
          ],
        )
      ).rows[0]!.id;
      counts.courses++;
      const lessonIds: string[] = [];
      for (let position = 1; position <= 4; position++) {
        lessonIds.push(
          (
            await client.query<{ id: string }>(
              'INSERT INTO lessons (course_id, position, title, body) VALUES ($1, $2, $3, $4) RETURNING id',
              [
                courseId,
                position,
                `${course.title}, part ${position}`,
                `What part ${position} of ${course.title} teaches, with an exercise at the end.`,
              ],
            )
          ).rows[0]!.id,
        );
        counts.lessons++;
      }
      const quizId = (
        await client.query<{ id: string }>(
          `INSERT INTO quizzes (course_id, title, pass_mark) VALUES ($1, $2, 60) RETURNING id`,
          [courseId, `${course.title}: check`],
        )
      ).rows[0]!.id;
      counts.quizzes++;
      for (let position = 1; position <= 3; position++) {
        await client.query(
          `INSERT INTO quiz_questions (quiz_id, position, prompt, options, correct_option) VALUES ($1, $2, $3, $4, $5)`,
          [
            quizId,
            position,
            `Question ${position} about ${course.topic}`,
            JSON.stringify(['First answer', 'Second answer', 'Third answer']),
            position % 3,
          ],
        );
      }
      if (!course.published) continue;
      // Learners enrol in a spread of courses, some part-way through.
      for (const [learnerIndex, learnerId] of learners.entries()) {
        if ((learnerIndex + index) % 3 === 0) continue;
        const done = (learnerIndex + index) % lessonIds.length;
        const enrollmentId = (
          await client.query<{ id: string }>(
            `INSERT INTO enrollments (user_id, course_id, progress) VALUES ($1, $2, $3) RETURNING id`,
            [learnerId, courseId, (done / (lessonIds.length + 1)) * 100],
          )
        ).rows[0]!.id;
        counts.enrollments++;
        for (const lessonId of lessonIds.slice(0, done)) {
          await client.query('INSERT INTO lesson_completions (enrollment_id, lesson_id) VALUES ($1, $2)', [
            enrollmentId,
            lessonId,
          ]);
        }
      }
    }
    return { seeded: true, admin: { email: 'admin@lms.local', password: adminPassword }, demoPassword, counts };
  });
}

/** The demo logins as the seed and the dev stack print them (the passwords are generated per seed). */
export function demoAccountLines(result: SeedResult): string[] {
  if (!result.admin || result.demoPassword === null) return [];
  return [
    `  admin:         ${result.admin.email} / ${result.admin.password}`,
    `  other accounts (ada@, grace@, learner01@ … learner12@lms.local): password ${result.demoPassword}`,
  ];
}
