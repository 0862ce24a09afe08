import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { connectClient } from '../db.js';
import { createTestDatabase, type TestDatabase } from '../testing/index.js';
import { defaultMigrationsDir, readMigrationFiles } from './migration-files.js';
import { Migrator } from './migrator.js';

let database: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  database = await createTestDatabase('schema');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  client = await connectClient(database.url);
});

afterAll(async () => {
  await client.end();
  await database.drop();
});

async function insertUser(email: string, role = 'student'): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO users (email, name, password_hash, role) VALUES ($1, 'Test', 'x', $2) RETURNING id`,
    [email, role],
  );
  return rows[0]!.id;
}

describe('the LMS schema', () => {
  it('creates every domain table', async () => {
    const { rows } = await client.query<{ tablename: string }>(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
    );
    expect(rows.map((row) => row.tablename)).toEqual([
      'audit_log',
      'certificates',
      'courses',
      'deployments',
      'email_deliveries',
      'enrollment_follow_ups',
      'enrollments',
      'lesson_completions',
      'lessons',
      'outbox',
      'quiz_attempts',
      'quiz_questions',
      'quizzes',
      'refresh_tokens',
      'schema_migrations',
      'users',
      'webhook_deliveries',
      'webhook_events',
      'webhook_subscriptions',
    ]);
  });

  it('indexes every foreign key (deletes and joins never scan the child table)', async () => {
    const { rows } = await client.query<{ constraint: string }>(`
      SELECT c.conrelid::regclass || '.' || c.conname AS constraint
        FROM pg_constraint c
       WHERE c.contype = 'f'
         AND NOT EXISTS (
           SELECT 1 FROM pg_index i
            WHERE i.indrelid = c.conrelid
              AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
              AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)`);
    expect(rows).toEqual([]);
  });

  it('keeps e-mail addresses unique and lower-case, roles to the three known ones', async () => {
    await insertUser('ada@example.com');
    await expect(insertUser('ada@example.com')).rejects.toThrow(/users_email_key/);
    await expect(insertUser('Grace@example.com')).rejects.toThrow(/users_email_check/);
    await expect(insertUser('eve@example.com', 'root')).rejects.toThrow(/users_role_check/);
  });

  it('allows one enrolment per learner and course, and one certificate per enrolment with a unique code', async () => {
    const instructor = await insertUser('teach@example.com', 'instructor');
    const learner = await insertUser('learn@example.com');
    const course = await client.query<{ id: string }>(
      `INSERT INTO courses (instructor_id, title, status, published_at) VALUES ($1, 'SQL', 'published', now()) RETURNING id`,
      [instructor],
    );
    const courseId = course.rows[0]!.id;
    const enrollment = await client.query<{ id: string }>(
      'INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2) RETURNING id',
      [learner, courseId],
    );
    await expect(
      client.query('INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)', [learner, courseId]),
    ).rejects.toThrow(/enrollments_user_id_course_id_key/);
    const insertCertificate = (code: string) =>
      client.query(
        `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title)
         VALUES ($1, $2, $3, $4, 'Learner', 'SQL')`,
        [enrollment.rows[0]!.id, learner, courseId, code],
      );
    await insertCertificate('ABCD-1234');
    await expect(insertCertificate('ABCD-5678')).rejects.toThrow(/certificates_enrollment_id_key/);
  });

  it('rejects a quiz question whose correct option is out of range', async () => {
    const instructor = await insertUser('quiz@example.com', 'instructor');
    const course = await client.query<{ id: string }>(
      `INSERT INTO courses (instructor_id, title) VALUES ($1, 'Q') RETURNING id`,
      [instructor],
    );
    const quiz = await client.query<{ id: string }>(
      `INSERT INTO quizzes (course_id, title, pass_mark) VALUES ($1, 'Q1', 50) RETURNING id`,
      [course.rows[0]!.id],
    );
    await expect(
      client.query(
        `INSERT INTO quiz_questions (quiz_id, position, prompt, options, correct_option) VALUES ($1, 1, 'p', '["a","b"]', 2)`,
        [quiz.rows[0]!.id],
      ),
    ).rejects.toThrow(/quiz_questions_correct_option_in_range/);
  });

  it('maintains updated_at on change', async () => {
    const id = await insertUser('touch@example.com');
    await client.query(
      `UPDATE users SET created_at = now() - interval '1 day', updated_at = now() - interval '1 day' WHERE id = $1`,
      [id],
    );
    await client.query(`UPDATE users SET name = 'Touched' WHERE id = $1`, [id]);
    const { rows } = await client.query<{ fresh: boolean }>(
      `SELECT updated_at > now() - interval '1 minute' AS fresh FROM users WHERE id = $1`,
      [id],
    );
    expect(rows[0]!.fresh).toBe(true);
  });
});

describe('the schema migrations', () => {
  it('all revert cleanly and re-apply', async () => {
    const scratch = await createTestDatabase('schema_roundtrip');
    try {
      const migrator = new Migrator({ connectionString: scratch.url, dir: defaultMigrationsDir });
      await migrator.up();
      const count = (await readMigrationFiles(defaultMigrationsDir)).length;
      await migrator.down(count);
      const empty = await connectClient(scratch.url);
      const { rows } = await empty.query(
        `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`,
      );
      await empty.end();
      expect(rows).toEqual([]);
      expect((await migrator.up()).applied).toHaveLength(count);
    } finally {
      await scratch.drop();
    }
  });
});
