import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectClient } from '../db.js';
import { createTestDatabase, type TestDatabase } from '../testing/index.js';
import { createMigrationFile, readMigrationFiles } from './migration-files.js';
import { MigrationFilesError } from './migration-files.js';
import {
  MigrationFailedError,
  MigrationHistoryError,
  MigrationIncompleteError,
  MigrationRefusedError,
  Migrator,
  type MigratorEvent,
} from './migrator.js';

let database: TestDatabase;
let dir: string;

beforeEach(async () => {
  database = await createTestDatabase('migrator');
  dir = await mkdtemp(path.join(os.tmpdir(), 'lms-migrations-'));
  await writeFile(
    path.join(dir, '0001_create_things.sql'),
    'CREATE TABLE things (id serial PRIMARY KEY, name text NOT NULL);\n\n-- migrate:down\nDROP TABLE things;\n',
  );
  await writeFile(
    path.join(dir, '0002_add_colour.sql'),
    "ALTER TABLE things ADD COLUMN colour text NOT NULL DEFAULT 'blue';\n-- migrate:down\nALTER TABLE things DROP COLUMN colour;\n",
  );
  await writeFile(path.join(dir, '0003_seed_things.sql'), "INSERT INTO things (name) VALUES ('first');\n");
});

afterEach(async () => {
  await database.drop();
  await rm(dir, { recursive: true, force: true });
});

const migrator = (events?: MigratorEvent[]) =>
  new Migrator({ connectionString: database.url, dir, onEvent: (event) => events?.push(event) });

async function query<T extends Record<string, unknown>>(sql: string): Promise<T[]> {
  const client = await connectClient(database.url);
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const recordedVersions = async () =>
  (await query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).map(
    (row) => row.version,
  );

describe('Migrator.up', () => {
  it('applies every migration in order and records version, name, checksum, duration and who', async () => {
    const events: MigratorEvent[] = [];
    const result = await migrator(events).up();
    expect(result.applied.map((migration) => migration.id)).toEqual([
      '0001_create_things',
      '0002_add_colour',
      '0003_seed_things',
    ]);
    expect(result.current).toBe(3);
    expect(events.filter((event) => event.kind === 'apply-done')).toHaveLength(3);
    const rows = await query<{
      version: number;
      name: string;
      checksum: string;
      duration_ms: number;
      applied_by: string;
    }>('SELECT * FROM schema_migrations ORDER BY version');
    const files = await readMigrationFiles(dir);
    expect(rows.map((row) => [row.version, row.name, row.checksum])).toEqual(
      files.map((file) => [file.version, file.name, file.checksum]),
    );
    expect(rows[0]!.applied_by).toMatch(/@.+ as \w+/);
    expect(await query('SELECT name, colour FROM things')).toEqual([{ name: 'first', colour: 'blue' }]);
  });

  it('is a no-op the second time', async () => {
    await migrator().up();
    const again = await migrator().up();
    expect(again.applied).toEqual([]);
    expect(await query('SELECT count(*)::int AS n FROM things')).toEqual([{ n: 1 }]);
  });

  it('stops at --to and reports a dry run without changing anything', async () => {
    const dry = await migrator().up({ dryRun: true });
    expect(dry.pending.map((migration) => migration.version)).toEqual([1, 2, 3]);
    expect(await query(`SELECT to_regclass('public.schema_migrations') AS t`)).toEqual([{ t: null }]);
    const partial = await migrator().up({ to: 2 });
    expect(partial.current).toBe(2);
    expect(await recordedVersions()).toEqual([1, 2]);
  });

  it('refuses a --to version that does not exist', async () => {
    await expect(migrator().up({ to: 9 })).rejects.toThrow(MigrationRefusedError);
  });

  it('applies each migration exactly once when four runs start together', async () => {
    await writeFile(path.join(dir, '0004_slow.sql'), 'SELECT pg_sleep(0.3);\nCREATE TABLE slow_done (id int);\n');
    const runs = await Promise.allSettled(Array.from({ length: 4 }, () => migrator().up()));
    expect(runs.map((run) => run.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    const appliedCounts = runs.map(
      (run) => (run as PromiseFulfilledResult<{ applied: unknown[] }>).value.applied.length,
    );
    expect(appliedCounts.reduce((sum, count) => sum + count, 0)).toBe(4);
    expect(await recordedVersions()).toEqual([1, 2, 3, 4]);
    expect(await query('SELECT count(*)::int AS n FROM things')).toEqual([{ n: 1 }]);
  });

  it('rolls a failing migration back completely and names the file, the error and its position', async () => {
    await writeFile(
      path.join(dir, '0004_broken.sql'),
      'CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT no_such_column FROM half_done;\n',
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect((error as Error).message).toBe(
      'migration 0004_broken.sql failed, nothing of it was applied: column "no_such_column" does not exist at line 3, column 8 [SQLSTATE 42703]',
    );
    expect((error as MigrationFailedError).exitCode).toBe(1);
    expect(await recordedVersions()).toEqual([1, 2, 3]);
    expect(await query(`SELECT to_regclass('public.half_done') AS t`)).toEqual([{ t: null }]);
    // Fixing the file is enough to carry on: there is no "dirty" state to clear.
    await writeFile(path.join(dir, '0004_broken.sql'), 'CREATE TABLE half_done (id int);\n');
    expect((await migrator().up()).applied.map((migration) => migration.version)).toEqual([4]);
  });

  it('refuses an empty migration', async () => {
    await createMigrationFile(dir, 'nothing yet');
    await expect(migrator().up()).rejects.toThrow(/0004_nothing_yet.sql has no SQL/);
  });
});

describe('Migrator.validate', () => {
  it('passes when files match and counts pending ones', async () => {
    await migrator().up({ to: 2 });
    expect(await migrator().validate()).toEqual({ checked: 2, pending: 1, current: 2 });
  });

  it('fails with exit 3 naming an edited applied migration, and up refuses to run', async () => {
    await migrator().up();
    const file = path.join(dir, '0002_add_colour.sql');
    await writeFile(file, (await readFile(file, 'utf8')).replace("'blue'", "'red'"));
    const error = await migrator()
      .validate()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationHistoryError);
    expect((error as MigrationHistoryError).exitCode).toBe(3);
    expect((error as Error).message).toContain('0002_add_colour.sql was edited after it was applied');
    await expect(migrator().up()).rejects.toThrow(MigrationHistoryError);
    expect((await migrator().status()).entries.find((entry) => entry.version === 2)?.state).toBe('changed');
  });

  it('does not count a Windows checkout (CRLF) as an edit', async () => {
    await migrator().up();
    const file = path.join(dir, '0001_create_things.sql');
    await writeFile(file, (await readFile(file, 'utf8')).replace(/\n/g, '\r\n'));
    await expect(migrator().validate()).resolves.toMatchObject({ checked: 3 });
  });

  it('reports applied migrations whose file is gone and pending ones older than the newest applied', async () => {
    await migrator().up();
    await rm(path.join(dir, '0003_seed_things.sql'));
    await expect(migrator().validate()).rejects.toThrow(/0003_seed_things is applied but has no file here/);
    await writeFile(path.join(dir, '0003_seed_things.sql'), "INSERT INTO things (name) VALUES ('first');\n");
    await migrator().up();
    await writeFile(path.join(dir, '0000_forgotten.sql'), 'SELECT 1;\n');
    await expect(migrator().validate()).rejects.toThrow(/0000_forgotten.sql is not applied but the newer 0003 is/);
  });
});

describe('Migrator.down', () => {
  it('reverts the newest migrations that have a down section', async () => {
    await migrator().up({ to: 2 });
    const plan = await migrator().planDown(2);
    expect(plan.map((migration) => migration.version)).toEqual([2, 1]);
    const result = await migrator().down(2, [2, 1]);
    expect(result.reverted.map((migration) => migration.version)).toEqual([2, 1]);
    expect(result.current).toBeNull();
    expect(await query(`SELECT to_regclass('public.things') AS t`)).toEqual([{ t: null }]);
  });

  it('refuses, before changing anything, when one of them has no down section', async () => {
    await migrator().up();
    await expect(migrator().planDown(2)).rejects.toThrow(
      /cannot revert 0003_seed_things.sql: no "-- migrate:down" section/,
    );
    expect(await recordedVersions()).toEqual([1, 2, 3]);
  });

  it('refuses more steps than applied migrations', async () => {
    await migrator().up({ to: 1 });
    await expect(migrator().planDown(2)).rejects.toThrow(/--steps 2 asks for more than the 1 applied/);
  });
});

const tableExists = async (name: string) =>
  (await query<{ t: string | null }>(`SELECT to_regclass('public.${name}')::text AS t`))[0]!.t !== null;

describe('migrations that control transactions', () => {
  it.each([
    ['COMMIT', 'COMMIT'],
    ['ROLLBACK', 'ROLLBACK'],
    ['BEGIN', 'BEGIN'],
    ['END', 'END'],
    ['commit and chain', 'COMMIT'],
    ['START TRANSACTION', 'START TRANSACTION'],
  ])('refuses a file with %s in it before applying anything, and says why', async (command, named) => {
    await writeFile(
      path.join(dir, '0004_sneaky.sql'),
      `CREATE TABLE sneaky_before (id int);\n/* the usual */\n${command};\nCREATE TABLE sneaky_after (id int);\n`,
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationFilesError);
    expect((error as MigrationFilesError).exitCode).toBe(1);
    expect((error as Error).message).toBe(
      `refusing to apply anything: 0004_sneaky.sql line 3 (${named}) — a migration must not begin, commit or roll back transactions (the runner runs each file in one transaction with its record, and a COMMIT or ROLLBACK inside would leave it half applied); nothing was applied`,
    );
    expect((error as MigrationFilesError).hint).toContain('-- migrate:no-transaction');
    // Not even the earlier, harmless migrations ran: the whole plan is checked first.
    expect(await tableExists('schema_migrations')).toBe(false);
    expect(await tableExists('sneaky_before')).toBe(false);
    expect(await tableExists('sneaky_after')).toBe(false);
    await expect(migrator().up({ dryRun: true })).rejects.toThrow(MigrationFilesError);
  });

  it('applies a file whose COMMIT and ROLLBACK are in literals, comments and function bodies', async () => {
    await writeFile(
      path.join(dir, '0004_harmless_words.sql'),
      [
        "INSERT INTO things (name) VALUES ('COMMIT;'), (E'it\\'s; ROLLBACK;');",
        '-- COMMIT;',
        '/* ROLLBACK; /* nested */ END; */',
        'CREATE PROCEDURE commit_in_batches() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;',
        "DO $body$ BEGIN RAISE NOTICE 'COMMIT'; END $body$;",
        'CREATE FUNCTION answer() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 42; END;',
        'SAVEPOINT halfway;',
        "INSERT INTO things (name) VALUES ('undone');",
        'ROLLBACK TO SAVEPOINT halfway;',
        '',
      ].join('\n'),
    );
    expect((await migrator().up()).current).toBe(4);
    expect(await recordedVersions()).toEqual([1, 2, 3, 4]);
    expect((await query<{ name: string }>('SELECT name FROM things ORDER BY id')).map((row) => row.name)).toEqual([
      'first',
      'COMMIT;',
      "it's; ROLLBACK;",
    ]);
  });

  it('a procedure that commits, called inside a migration, fails it with nothing applied (PostgreSQL refuses)', async () => {
    await writeFile(
      path.join(dir, '0004_call_commit.sql'),
      'CREATE TABLE called_before (id int);\nCREATE PROCEDURE commits() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;\nCALL commits();\n',
    );
    await expect(migrator().up()).rejects.toThrow(
      /migration 0004_call_commit.sql failed, nothing of it was applied: invalid transaction termination/,
    );
    expect(await recordedVersions()).toEqual([1, 2, 3]);
    expect(await tableExists('called_before')).toBe(false);
  });

  it('reports a COMMIT the file check cannot see as possibly applied, not recorded', async () => {
    // A function named "begin" fools psql's statement splitter, and ours, which follows it.
    await writeFile(
      path.join(dir, '0004_fooled.sql'),
      "CREATE TABLE fooled_before (id int);\nCREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCOMMIT;\nCREATE TABLE fooled_after (id int);\n",
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationIncompleteError);
    expect((error as MigrationIncompleteError).exitCode).toBe(1);
    expect((error as Error).message).toBe(
      'migration 0004_fooled.sql ended the transaction the runner ran it in (a statement that commits or rolls back), so part or all of it may be committed, and it was not recorded',
    );
    expect(await recordedVersions()).toEqual([1, 2, 3]);
    expect(await tableExists('fooled_before')).toBe(true);
  });

  it('tells a failure inside a transaction the file began from one inside its own', async () => {
    await writeFile(
      path.join(dir, '0004_fooled.sql'),
      "CREATE TABLE fooled_before (id int);\nCREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCOMMIT;\nBEGIN;\nSELECT no_such_column FROM fooled_before;\n",
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationIncompleteError);
    expect((error as Error).message).toMatch(
      /^migration 0004_fooled.sql ended the transaction the runner ran it in .* it was not recorded; then it failed: column "no_such_column" does not exist at line 5, column 8 \[SQLSTATE 42703\]$/,
    );
    expect(await recordedVersions()).toEqual([1, 2, 3]);
    expect(await tableExists('fooled_before')).toBe(true);
  });

  it('explains that CREATE INDEX CONCURRENTLY needs -- migrate:no-transaction', async () => {
    await writeFile(
      path.join(dir, '0004_index.sql'),
      'CREATE TABLE index_before (id int);\nCREATE INDEX CONCURRENTLY things_name_idx ON things (name);\n',
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect((error as Error).message).toContain(
      'migration 0004_index.sql failed, nothing of it was applied: CREATE INDEX CONCURRENTLY cannot run inside a transaction block',
    );
    expect((error as MigrationFailedError).hint).toContain('"-- migrate:no-transaction"');
    expect(await tableExists('index_before')).toBe(false);
  });
});

describe('-- migrate:no-transaction', () => {
  const indexes = async () =>
    query<{ name: string; valid: boolean }>(
      `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'public.things'::regclass AND NOT i.indisprimary ORDER BY 1`,
    );

  it('applies CREATE INDEX CONCURRENTLY one statement at a time, records it, and reverts it the same way', async () => {
    await writeFile(
      path.join(dir, '0004_index_things.sql'),
      [
        '-- 0004 index things',
        '-- migrate:no-transaction',
        'CREATE INDEX CONCURRENTLY things_name_idx ON things (name);',
        'CREATE INDEX CONCURRENTLY things_colour_idx ON things (colour);',
        '-- migrate:down',
        'DROP INDEX CONCURRENTLY things_colour_idx;',
        'DROP INDEX CONCURRENTLY things_name_idx;',
        '',
      ].join('\n'),
    );
    const events: MigratorEvent[] = [];
    expect((await migrator(events).up()).current).toBe(4);
    expect(events.filter((event) => event.kind === 'apply-done')).toHaveLength(4);
    expect(await recordedVersions()).toEqual([1, 2, 3, 4]);
    expect(await indexes()).toEqual([
      { name: 'things_colour_idx', valid: true },
      { name: 'things_name_idx', valid: true },
    ]);
    expect((await migrator().down(1)).current).toBe(3);
    expect(await indexes()).toEqual([]);
    expect(await recordedVersions()).toEqual([1, 2, 3]);
  });

  it('stops at a failing statement, keeps what committed, records nothing, and says so', async () => {
    const file = path.join(dir, '0004_index_things.sql');
    await writeFile(
      file,
      '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY things_name_idx ON things (name);\nUPDATE things SET name = no_such_column;\n',
    );
    const error = await migrator()
      .up()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MigrationIncompleteError);
    expect((error as Error).message).toBe(
      'migration 0004_index_things.sql failed at statement 2 of 2 (line 3) and may be partly applied — it runs without a transaction (-- migrate:no-transaction), so the 1 statement(s) before it stay committed; it was not recorded: column "no_such_column" does not exist at line 3, column 26 [SQLSTATE 42703]',
    );
    expect((error as MigrationIncompleteError).hint).toContain('INVALID index');
    expect(await recordedVersions()).toEqual([1, 2, 3]);
    expect(await indexes()).toEqual([{ name: 'things_name_idx', valid: true }]);
    // Made safe to run again, the file completes and is recorded.
    await writeFile(
      file,
      '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS things_name_idx ON things (name);\nCREATE INDEX CONCURRENTLY things_colour_idx ON things (colour);\n',
    );
    expect((await migrator().up()).applied.map((migration) => migration.version)).toEqual([4]);
    expect(await indexes()).toHaveLength(2);
  });

  it('may CALL a procedure that commits in batches', async () => {
    await writeFile(
      path.join(dir, '0004_backfill.sql'),
      [
        '-- migrate:no-transaction',
        'CREATE PROCEDURE fill_things() LANGUAGE plpgsql AS $$',
        "BEGIN INSERT INTO things (name) VALUES ('batch 1'); COMMIT; INSERT INTO things (name) VALUES ('batch 2'); COMMIT; END",
        '$$;',
        'CALL fill_things();',
        '',
      ].join('\n'),
    );
    expect((await migrator().up()).current).toBe(4);
    expect((await query<{ name: string }>('SELECT name FROM things ORDER BY id')).map((row) => row.name)).toEqual([
      'first',
      'batch 1',
      'batch 2',
    ]);
  });

  it('still refuses COMMIT and BEGIN: each statement already commits on its own', async () => {
    await writeFile(
      path.join(dir, '0004_grouped.sql'),
      '-- migrate:no-transaction\nBEGIN;\nUPDATE things SET name = name;\nCOMMIT;\n',
    );
    await expect(migrator().up()).rejects.toThrow(
      /^refusing to apply anything: 0004_grouped.sql line 2 \(BEGIN\), line 4 \(COMMIT\)/,
    );
  });

  it('refuses to revert through a down section that commits, before reverting anything', async () => {
    await writeFile(
      path.join(dir, '0004_bad_down.sql'),
      'CREATE TABLE bad_down (id int);\n-- migrate:down\nDROP TABLE bad_down;\nCOMMIT;\n',
    );
    await migrator().up();
    await expect(migrator().planDown(1)).rejects.toThrow(
      /^refusing to revert anything: 0004_bad_down.sql line 4 \(COMMIT\) .* nothing was reverted$/,
    );
    await expect(migrator().down(1)).rejects.toThrow(MigrationFilesError);
    expect(await tableExists('bad_down')).toBe(true);
    expect(await recordedVersions()).toEqual([1, 2, 3, 4]);
  });

  it('must stand above -- migrate:down, once', async () => {
    await writeFile(
      path.join(dir, '0004_late.sql'),
      'SELECT 1;\n-- migrate:down\n-- migrate:no-transaction\nSELECT 2;\n',
    );
    await expect(readMigrationFiles(dir)).rejects.toThrow(
      '0004_late.sql: move "-- migrate:no-transaction" above "-- migrate:down"; it applies to the whole file',
    );
    await writeFile(
      path.join(dir, '0004_late.sql'),
      '-- migrate:no-transaction\n-- migrate:no-transaction\nSELECT 1;\n',
    );
    await expect(readMigrationFiles(dir)).rejects.toThrow(/has 2 "-- migrate:no-transaction" lines/);
  });
});

describe('migration files', () => {
  it('rejects misnamed files and duplicate versions', async () => {
    await writeFile(path.join(dir, '5_bad-name.sql'), 'SELECT 1;');
    await expect(readMigrationFiles(dir)).rejects.toThrow(
      /5_bad-name.sql: migration files are named NNNN_snake_case_name.sql/,
    );
    await rm(path.join(dir, '5_bad-name.sql'));
    await writeFile(path.join(dir, '0002_other.sql'), 'SELECT 1;');
    await expect(readMigrationFiles(dir)).rejects.toThrow(/0002_add_colour.sql and 0002_other.sql share version 0002/);
  });

  it('creates the next-numbered file with a snake_case name and a down marker', async () => {
    const created = await createMigrationFile(dir, 'Add course-tags');
    expect(created.filename).toBe('0004_add_course_tags.sql');
    expect(await readFile(created.path, 'utf8')).toMatch(/^-- migrate:down$/m);
    await expect(createMigrationFile(dir, 'drop; table')).rejects.toThrow(/must use letters, digits/);
  });
});

describe('expand/contract (-- migrate:contract, up --expand-only)', () => {
  const columns = async () =>
    (
      await query<{ name: string }>(
        "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'things' ORDER BY 1",
      )
    ).map((row) => row.name);

  it('finds the statements that drop or rename, and only those', async () => {
    await writeFile(
      path.join(dir, '0004_mixed.sql'),
      [
        '-- drop table later: a comment never counts',
        "INSERT INTO things (name) VALUES ('DROP TABLE things');",
        'ALTER TABLE things ALTER COLUMN colour DROP NOT NULL, DROP CONSTRAINT IF EXISTS nothing;',
        'ALTER TABLE things RENAME CONSTRAINT things_pkey TO things_id_pkey;',
        'ALTER TABLE things DROP COLUMN colour;',
        'ALTER TABLE things RENAME name TO title;',
        'DROP VIEW IF EXISTS thing_names;',
        'DROP TABLE IF EXISTS old_things;',
        '-- migrate:down',
        'DROP TABLE things;',
      ].join('\n'),
    );
    const file = (await readMigrationFiles(dir)).find((candidate) => candidate.version === 4)!;
    expect(file.contract).toBe(false);
    expect(file.contractStatements).toEqual([
      { line: 5, kind: 'DROP COLUMN' },
      { line: 6, kind: 'RENAME' },
      { line: 7, kind: 'DROP VIEW' },
      { line: 8, kind: 'DROP TABLE' },
    ]);
  });

  it('--expand-only refuses an unmarked DROP COLUMN and a marked contract, before applying anything; plain up runs both', async () => {
    await writeFile(path.join(dir, '0004_add_size.sql'), 'ALTER TABLE things ADD COLUMN size int;\n');
    await writeFile(path.join(dir, '0005_drop_colour.sql'), 'ALTER TABLE things\n  DROP COLUMN colour;\n');
    await expect(migrator().up({ expandOnly: true })).rejects.toThrow(
      new MigrationRefusedError(
        '0005_drop_colour.sql line 1: DROP COLUMN in a rolling deploy would break the version still running; mark the file "-- migrate:contract" and deploy it after the code that stops using it (expand/contract), or pass --allow-contract',
      ),
    );
    expect(await query("SELECT to_regclass('public.things') AS t")).toEqual([{ t: null }]);

    await writeFile(
      path.join(dir, '0005_drop_colour.sql'),
      '-- migrate:contract\nALTER TABLE things DROP COLUMN colour;\n',
    );
    await expect(migrator().up({ expandOnly: true })).rejects.toThrow(
      /0005_drop_colour.sql is marked "-- migrate:contract"/,
    );
    expect(await query("SELECT to_regclass('public.things') AS t")).toEqual([{ t: null }]);

    // Up to the expanding part, a rolling deploy goes ahead.
    expect((await migrator().up({ expandOnly: true, to: 4 })).current).toBe(4);
    expect(await columns()).toContain('size');
    // Once every instance runs the new version, the contract runs.
    expect((await migrator().up()).current).toBe(5);
    expect(await columns()).not.toContain('colour');
  });

  it('refuses the mark below -- migrate:down, where it would say nothing about the forward change', async () => {
    await writeFile(
      path.join(dir, '0004_misplaced.sql'),
      'ALTER TABLE things DROP COLUMN colour;\n-- migrate:down\n-- migrate:contract\nALTER TABLE things ADD COLUMN colour text;\n',
    );
    await expect(migrator().up()).rejects.toThrow(/move "-- migrate:contract" above "-- migrate:down"/);
  });
});
