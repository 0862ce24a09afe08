import { connectClient, createDatabaseIfMissing, defaultMigrationsDir, Migrator, withDatabase } from '@lms/core';

/** Bumped whenever the generated contents change, so an old benchmark database is rebuilt. */
const GENERATOR_VERSION = 2;

export const benchServerUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/postgres';

/** Scale of the shared benchmark database `lms_bench` (about 600 MiB). */
export const BENCH_SCALE = 0.45;

/**
 * A database with the LMS schema and realistic volume. At scale 1: 200k users, 2k published
 * courses with 20 lessons each, 2M enrolments, 4M lesson completions, 400k audit rows (about
 * 1.3 GB with indexes). Built once and reused while its generator version and scale match.
 */
export async function ensureBenchDatabase(
  name: string,
  scale = 1,
  log: (line: string) => void = () => undefined,
): Promise<string> {
  const url = withDatabase(benchServerUrl, name);
  await createDatabaseIfMissing(url);
  const client = await connectClient(url);
  try {
    const { rows } = await client.query<{ present: boolean }>(
      `SELECT to_regclass('public.bench_meta') IS NOT NULL AS present`,
    );
    if (rows[0]?.present) {
      const meta = await client.query<{ version: number; scale: number }>('SELECT version, scale FROM bench_meta');
      if (meta.rows[0]?.version === GENERATOR_VERSION && meta.rows[0].scale === scale) {
        // A database generated before the newest migrations gets them, as a deploy would.
        await new Migrator({ connectionString: url, dir: defaultMigrationsDir }).up();
        return url;
      }
    }
    log(`generating ${name} (scale ${scale}); this takes a few minutes once`);
    await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    await new Migrator({ connectionString: url, dir: defaultMigrationsDir }).up();
    const users = Math.round(200_000 * scale);
    const steps: Array<[string, string]> = [
      [
        'users',
        `INSERT INTO users (email, name, password_hash, role, created_at, last_active_at)
         SELECT 'bench' || g || '@example.com', 'Bench User ' || g, md5(g::text) || md5((g * 7)::text),
                CASE WHEN g % 100 = 0 THEN 'instructor' ELSE 'student' END,
                now() - make_interval(mins => g), now() - make_interval(hours => g % 500)
           FROM generate_series(1, ${users}) g`,
      ],
      [
        'courses',
        `INSERT INTO courses (instructor_id, title, description, status, published_at)
         SELECT id, 'Course ' || n, 'About course ' || n || ': ' || md5(n::text) || md5((n + 1)::text), 'published', now()
           FROM (SELECT id, row_number() OVER (ORDER BY created_at) AS n FROM users WHERE role = 'instructor') i`,
      ],
      [
        'lessons',
        `INSERT INTO lessons (course_id, position, title, body)
         SELECT c.id, p, 'Lesson ' || p, (SELECT string_agg(md5(c.id::text || p || k), ' ') FROM generate_series(1, 8) k)
           FROM courses c CROSS JOIN generate_series(1, 20) p`,
      ],
      [
        'enrollments',
        `WITH s AS (SELECT id, row_number() OVER (ORDER BY created_at) AS n FROM users WHERE role = 'student'),
              c AS (SELECT array_agg(id ORDER BY created_at, id) AS ids FROM courses)
         INSERT INTO enrollments (user_id, course_id, progress, enrolled_at, last_activity_at)
         SELECT s.id, c.ids[1 + (s.n * 31 + k * 197) % cardinality(c.ids)], (s.n * 7 + k) % 100,
                now() - make_interval(days => (s.n % 300)::int), now() - make_interval(hours => k)
           FROM s CROSS JOIN c CROSS JOIN generate_series(0, 9) k`,
      ],
      [
        'lesson completions',
        `INSERT INTO lesson_completions (enrollment_id, lesson_id)
         SELECT e.id, l.id
           FROM enrollments e
           JOIN lessons l ON l.course_id = e.course_id AND l.position <= 1 + (e.progress::int % 3)`,
      ],
      [
        'audit log',
        `INSERT INTO audit_log (actor_id, action, entity_type, entity_id, details)
         SELECT NULL, 'enrollment.created', 'enrollment', g::text,
                jsonb_build_object('n', g, 'source', 'bench', 'note', md5(g::text))
           FROM generate_series(1, ${Math.round(400_000 * scale)}) g`,
      ],
    ];
    for (const [what, sql] of steps) {
      const started = Date.now();
      await client.query(sql);
      log(`  ${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    await client.query('VACUUM ANALYZE');
    await client.query(`CREATE TABLE bench_meta (version int NOT NULL, scale real NOT NULL)`);
    await client.query('INSERT INTO bench_meta VALUES ($1, $2)', [GENERATOR_VERSION, scale]);
    return url;
  } finally {
    await client.end();
  }
}

export async function databaseSize(url: string): Promise<number> {
  const client = await connectClient(url);
  try {
    const { rows } = await client.query<{ size: string }>('SELECT pg_database_size(current_database()) AS size');
    return Number(rows[0]!.size);
  } finally {
    await client.end();
  }
}
