import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectClient, defaultMigrationsDir, readMigrationFiles } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { projectMigrations } from '../testing/backup-fixtures.js';
import { runLmsctl } from '../testing/run-cli.js';

let database: TestDatabase;
let workDir: string;

beforeEach(async () => {
  database = await createTestDatabase('lmsctl_migrate');
  workDir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-migrate-'));
});

afterEach(async () => {
  await database.drop();
  await rm(workDir, { recursive: true, force: true });
});

async function recordedVersions(url: string): Promise<number[]> {
  const client = await connectClient(url);
  try {
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    return rows.map((row) => row.version);
  } finally {
    await client.end();
  }
}

describe('lmsctl migrate (the real binary)', () => {
  it('applies everything to an empty database, then is a no-op, and status --json lists every version applied', async () => {
    const versions = (await readMigrationFiles(defaultMigrationsDir)).map((file) => file.version);

    const first = await runLmsctl(['migrate', '--database-url', database.url]);
    expect(first.exitCode, String(first.stderr)).toBe(0);
    expect(first.stdout).toBe(
      `${database.name} on 127.0.0.1:5432 is now at ${String(versions.at(-1)).padStart(4, '0')} (${versions.length} applied)`,
    );
    expect(first.stderr).toContain('applied 0001_users_and_sessions');

    const second = await runLmsctl(['migrate', 'up', '--database-url', database.url]);
    expect(second.exitCode).toBe(0);
    expect(second.stdout).toContain('is up to date');

    const status = await runLmsctl(['migrate', 'status', '--json', '--database-url', database.url]);
    expect(status.exitCode).toBe(0);
    const parsed = JSON.parse(String(status.stdout)) as {
      pending: number;
      migrations: Array<{ version: number; state: string }>;
    };
    expect(parsed.pending).toBe(0);
    expect(parsed.migrations.map((entry) => [entry.version, entry.state])).toEqual(
      versions.map((version) => [version, 'applied']),
    );
  });

  it('four processes started together all exit 0 and record each version once', async () => {
    const runs = await Promise.all(
      Array.from({ length: 4 }, () => runLmsctl(['migrate', '--database-url', database.url])),
    );
    expect(runs.map((run) => run.exitCode)).toEqual([0, 0, 0, 0]);
    const versions = (await readMigrationFiles(defaultMigrationsDir)).map((file) => file.version);
    expect(await recordedVersions(database.url)).toEqual(versions);
  });

  it('exits 3 naming an applied migration that was edited', async () => {
    const dir = path.join(workDir, 'migrations');
    await cp(defaultMigrationsDir, dir, { recursive: true });
    expect((await runLmsctl(['migrate', '--migrations-dir', dir, '--database-url', database.url])).exitCode).toBe(0);
    const edited = path.join(dir, '0002_courses_and_lessons.sql');
    await writeFile(
      edited,
      `${await readFile(edited, 'utf8')}\n-- a harmless-looking comment\n`.replace(
        '-- migrate:down',
        '-- note\n-- migrate:down',
      ),
    );

    const validate = await runLmsctl(['migrate', 'validate', '--migrations-dir', dir, '--database-url', database.url]);
    expect(validate.exitCode).toBe(3);
    expect(validate.stderr).toContain('0002_courses_and_lessons.sql was edited after it was applied');

    // status still lists every migration, then exits 3 as its help says.
    const status = await runLmsctl([
      'migrate',
      'status',
      '--json',
      '--migrations-dir',
      dir,
      '--database-url',
      database.url,
    ]);
    expect(status.exitCode).toBe(3);
    const listed = JSON.parse(String(status.stdout)) as {
      problems: number;
      migrations: Array<{ id: string; state: string }>;
    };
    expect(listed.problems).toBe(1);
    expect(listed.migrations.find((entry) => entry.id === '0002_courses_and_lessons')?.state).toBe('changed');
    expect(status.stderr).toContain('1 applied migration(s) changed or missing');

    const up = await runLmsctl(['migrate', '--migrations-dir', dir, '--database-url', database.url]);
    expect(up.exitCode).toBe(3);
  });

  it('exits 1 on an SQL error, names the file and position, and leaves none of its effects', async () => {
    const dir = path.join(workDir, 'migrations');
    await cp(defaultMigrationsDir, dir, { recursive: true });
    await writeFile(
      path.join(dir, '0900_broken.sql'),
      'CREATE TABLE broken_half (id int);\nALTER TABLE users ADD COLUMN nickname text;\nINSERT INTO broken_half VALUES (1, 2);\n',
    );
    const run = await runLmsctl(['migrate', '--migrations-dir', dir, '--database-url', database.url]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain(
      'error: migration 0900_broken.sql failed, nothing of it was applied: INSERT has more expressions than target columns at line 3, column 36 [SQLSTATE 42601]',
    );
    const client = await connectClient(database.url);
    try {
      const table = await client.query(`SELECT to_regclass('public.broken_half') AS t`);
      const column = await client.query(
        `SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'`,
      );
      expect(table.rows).toEqual([{ t: null }]);
      expect(column.rowCount).toBe(0);
    } finally {
      await client.end();
    }
    expect(await recordedVersions(database.url)).not.toContain(900);
  });

  it('exits 1 on a migration that commits, before applying anything, and says why and what to do', async () => {
    const dir = path.join(workDir, 'migrations');
    await cp(defaultMigrationsDir, dir, { recursive: true });
    await writeFile(
      path.join(dir, '0900_commits.sql'),
      "CREATE TABLE commits_half (id int);\nCOMMIT;\nINSERT INTO commits_half VALUES ('x');\n",
    );
    const run = await runLmsctl(['migrate', '--migrations-dir', dir, '--database-url', database.url]);
    expect(run.exitCode).toBe(1);
    expect(String(run.stderr).split('\n')).toEqual([
      'error: refusing to apply anything: 0900_commits.sql line 2 (COMMIT) — a migration must not begin, commit or roll back transactions (the runner runs each file in one transaction with its record, and a COMMIT or ROLLBACK inside would leave it half applied); nothing was applied',
      'remove those statements; statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY …) go in a file of their own with a line "-- migrate:no-transaction" (see the README, Migrations)',
    ]);
    const client = await connectClient(database.url);
    try {
      const { rows } = await client.query(
        `SELECT to_regclass('public.schema_migrations') AS migrations, to_regclass('public.commits_half') AS half`,
      );
      expect(rows).toEqual([{ migrations: null, half: null }]);
    } finally {
      await client.end();
    }
  });

  it('applies a -- migrate:no-transaction file with CREATE INDEX CONCURRENTLY and records it', async () => {
    const dir = path.join(workDir, 'migrations');
    await cp(defaultMigrationsDir, dir, { recursive: true });
    await writeFile(
      path.join(dir, '0900_index_users.sql'),
      '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);\n-- migrate:down\nDROP INDEX CONCURRENTLY users_created_at_idx;\n',
    );
    const run = await runLmsctl(['migrate', '--migrations-dir', dir, '--database-url', database.url]);
    expect(run.exitCode, String(run.stderr)).toBe(0);
    expect(run.stderr).toContain('applied 0900_index_users');
    expect((await recordedVersions(database.url)).at(-1)).toBe(900);
    const client = await connectClient(database.url);
    try {
      const { rows } = await client.query(
        `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'public.users_created_at_idx'::regclass`,
      );
      expect(rows).toEqual([{ valid: true }]);
    } finally {
      await client.end();
    }
  });

  it('fails within seconds on an unreachable server with one masked line', async () => {
    const run = await runLmsctl(['migrate', '--database-url', 'postgres://lms:hunter2@127.0.0.1:1/lms']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toBe(
      'error: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused (is the server running and listening there?)',
    );
  });

  it('reports errors as JSON on stdout with --json, never with the password', async () => {
    const run = await runLmsctl(['migrate', '--json', '--database-url', 'postgres://lms:hunter2@127.0.0.1:1/lms']);
    expect(run.exitCode).toBe(1);
    expect(JSON.parse(String(run.stdout))).toEqual({
      error: { code: 'database_unavailable', message: expect.stringContaining('connection refused'), exitCode: 1 },
    });
    expect(`${run.stdout}${run.stderr}`).not.toContain('hunter2');
  });

  it('says how to give a database when none is configured (exit 2)', async () => {
    const run = await runLmsctl(['migrate', 'status'], { cwd: workDir });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('error: no database given');
  });

  it('reads DATABASE_URL from --env-file, and the environment wins over the file', async () => {
    const envFile = path.join(workDir, 'lms.env');
    await writeFile(envFile, `DATABASE_URL=${database.url}\n`);
    const fromFile = await runLmsctl(['migrate', 'status', '--env-file', envFile, '--json'], { cwd: workDir });
    expect(fromFile.exitCode, String(fromFile.stderr)).toBe(0);
    const overridden = await runLmsctl(['migrate', 'status', '--env-file', envFile], {
      cwd: workDir,
      env: { DATABASE_URL: 'postgres://root@127.0.0.1:1/elsewhere' },
    });
    expect(overridden.exitCode).toBe(1);
    expect(overridden.stderr).toContain('127.0.0.1:1');
  });

  it('refuses an invalid environment listing every problem (exit 1)', async () => {
    const run = await runLmsctl(['migrate', 'status', '--database-url', database.url], {
      cwd: workDir,
      env: { NODE_ENV: 'production', SECRET_KEY: 'short', DEBUG: 'true' },
    });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('SECRET_KEY: must be at least 64 characters in production');
    expect(run.stderr).toContain('DEBUG: must be false in production');
  });

  it('down refuses without a terminal unless --yes, and names what it reverts', async () => {
    expect((await runLmsctl(['migrate', '--database-url', database.url])).exitCode).toBe(0);
    const refused = await runLmsctl(['migrate', 'down', '--database-url', database.url]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('this reverts 1 migration(s) on');
    expect(refused.stderr).toContain((await projectMigrations()).latest.id);
    expect(refused.stderr).toContain('pass --yes to confirm non-interactively');
    const before = await recordedVersions(database.url);
    expect(before.at(-1)).toBe((await projectMigrations()).latest.version);

    const done = await runLmsctl(['migrate', 'down', '--steps', '2', '--yes', '--database-url', database.url]);
    expect(done.exitCode, String(done.stderr)).toBe(0);
    expect(await recordedVersions(database.url)).toEqual(before.slice(0, -2));
  });

  it('creates a migration file and rejects unknown subcommands and bad option values (exit 2)', async () => {
    const dir = path.join(workDir, 'new-migrations');
    const created = await runLmsctl(['migrate', 'create', 'add course tags', '--migrations-dir', dir], {
      cwd: workDir,
    });
    expect(created.exitCode).toBe(0);
    expect(created.stdout).toBe(`created ${path.join('new-migrations', '0001_add_course_tags.sql')}`);

    const unknown = await runLmsctl(['migrate', 'sideways']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('unknown migrate command "sideways"');

    const badSteps = await runLmsctl(['migrate', 'down', '--steps', 'two']);
    expect(badSteps.exitCode).toBe(2);
    expect(badSteps.stderr).toContain('expected a whole number of at least 1');
  });

  it('--create-database creates a missing database before migrating', async () => {
    const url = `${database.url}_fresh`;
    try {
      const run = await runLmsctl(['migrate', '--create-database', '--database-url', url]);
      expect(run.exitCode, String(run.stderr)).toBe(0);
      expect(run.stderr).toContain(`created database ${database.name}_fresh`);
    } finally {
      const { dropTestDatabase } = await import('@lms/core/testing');
      await dropTestDatabase(`${database.name}_fresh`);
    }
  });
});
