import { chmod, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connectClient, defaultMigrationsDir, Migrator, readMigrationFiles, withDatabase } from '@lms/core';
import { listDatabases, type TestDatabase } from '@lms/core/testing';
import { execa } from 'execa';

/** Migrates a database to the LMS schema and fills it with `users` users, courses and enrolments. */
export async function seedLmsDatabase(url: string, options: { users?: number } = {}): Promise<void> {
  await new Migrator({ connectionString: url, dir: defaultMigrationsDir }).up();
  const users = options.users ?? 50;
  const client = await connectClient(url);
  try {
    await client.query(
      `INSERT INTO users (email, name, password_hash, role)
       SELECT 'user' || g || '@example.com', 'User ' || g || ' Zoë', 'hash', CASE WHEN g % 10 = 0 THEN 'instructor' ELSE 'student' END
         FROM generate_series(1, $1::int) g`,
      [users],
    );
    await client.query(
      `INSERT INTO courses (instructor_id, title, status, published_at)
       SELECT id, 'Course of ' || name, 'published', now() FROM users WHERE role = 'instructor'`,
    );
    await client.query(
      `INSERT INTO enrollments (user_id, course_id)
       SELECT u.id, c.id FROM users u CROSS JOIN LATERAL (SELECT id FROM courses ORDER BY id LIMIT 2) c WHERE u.role = 'student'`,
    );
  } finally {
    await client.end();
  }
}

export async function rowCount(url: string, table: string): Promise<number> {
  const client = await connectClient(url);
  try {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/**
 * A folder to use as LMS_PG_BIN_DIR: each tool in `scripts` is replaced by a shell script (in
 * which "$REAL" is the real program), the others link to the real ones.
 */
export async function fakePgBinDir(
  scripts: Partial<Record<'pg_dump' | 'pg_restore' | 'psql', string>>,
): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-pgbin-'));
  const which = async (tool: string) => (await execa('sh', ['-c', `command -v ${tool}`])).stdout.trim();
  for (const tool of ['pg_dump', 'pg_restore', 'psql'] as const) {
    const real = await which(tool);
    const script = scripts[tool];
    if (script === undefined) {
      await symlink(real, path.join(dir, tool));
      continue;
    }
    const file = path.join(dir, tool);
    await writeFile(file, `#!/bin/sh\nREAL=${JSON.stringify(real)}\n${script}\n`);
    await chmod(file, 0o755);
  }
  return dir;
}

/** The newest migration of the project and how many there are (tests must not hard-code them). */
export async function projectMigrations(): Promise<{
  latest: { version: number; name: string; id: string };
  count: number;
}> {
  const files = await readMigrationFiles(defaultMigrationsDir);
  const latest = files.at(-1)!;
  return { latest: { version: latest.version, name: latest.name, id: latest.id }, count: files.length };
}

/** Ordinary tables of the public schema of a database. */
export async function publicTableCount(url: string): Promise<number> {
  const client = await connectClient(url);
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`,
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

/**
 * Drops the test database and every one a backup, restore or drill made beside it
 * (`<name>_copy`, `<name>_restoring_…`, scratch databases): the clean-up of a backup test.
 */
export async function dropDatabasesOf(database: TestDatabase): Promise<void> {
  const admin = await connectClient(withDatabase(database.url, 'postgres'));
  try {
    for (const name of await listDatabases(database.name)) {
      await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}
