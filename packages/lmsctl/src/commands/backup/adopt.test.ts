import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf, type BackupManifest } from '../../backup/archive/manifest.js';
import { dropDatabasesOf, projectMigrations, seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { fingerprintTables } from '../../testing/rich-fixture.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { backupPrune } from '../../backup/retention.js';
import { restore, type RestoreResult } from '../restore/restore.js';
import { backupAdopt } from './adopt.js';
import { backupList } from './list.js';
import { backupVerify } from './verify.js';

/**
 * `backup adopt`: dumps the old scripts (or a DBA) made with plain pg_dump become backups —
 * checked deeply, counted from a scratch restore, given a manifest marked adopted — and until
 * then every command agrees they are not backups and says how to adopt them.
 */
let database: TestDatabase;
let work: string;

beforeAll(async () => {
  database = await createTestDatabase('backup_adopt');
  await seedLmsDatabase(database.url, { users: 60 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-adopt-'));
});

afterAll(async () => {
  await dropDatabasesOf(database);
  await rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

const envOf = (dir: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: database.url,
  LMS_BACKUP_DIR: dir,
  LMS_DRILL_DIR: path.join(dir, 'drills'),
  ...extra,
});
const contextOf = (dir: string, extra: Record<string, string> = {}) =>
  testContext({ cwd: work, yes: true, env: envOf(dir, extra) }).ctx;

/** What the old scripts did: a plain pg_dump of the database. */
async function rawDump(file: string, format: 'custom' | 'directory' = 'custom'): Promise<void> {
  await execa('pg_dump', [`--format=${format}`, `--file=${file}`, database.url]);
}

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

/** Scratch databases adoption left behind: none may stay. */
async function adoptScratchDatabases(): Promise<string[]> {
  const admin = await connectClient(withDatabase(database.url, 'postgres'));
  try {
    const { rows } = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database
        WHERE starts_with(datname, 'lms_adopt_')
          AND shobj_description(oid, 'pg_database')::jsonb ->> 'target' = $1`,
      [database.name],
    );
    return rows.map((row) => row.datname);
  } finally {
    await admin.end();
  }
}

describe('a pg_dump file of the old scripts', () => {
  it('is not a backup until adopted: list, verify latest, restore latest and prune agree and say how to adopt it', async () => {
    const dir = await freshDir('before');
    const legacy = path.join(dir, 'lms_20250101_020000.dump');
    await rawDump(legacy);

    const listed = await backupList(contextOf(dir));
    expect(listed.backups).toEqual([]);
    expect(listed.notBackups).toEqual([expect.objectContaining({ file: 'lms_20250101_020000.dump' })]);
    const shown = await runLmsctl(['backup', 'list'], { env: envOf(dir), cwd: work });
    expect(shown.stdout).toContain('not lmsctl backups (no manifest): lms_20250101_020000.dump');
    expect(shown.stdout).toContain('lmsctl backup adopt');

    for (const args of [
      ['backup', 'verify', 'latest'],
      ['restore', 'latest', '--yes', '--no-pause-queues'],
    ]) {
      const run = await runLmsctl(args, { env: envOf(dir), cwd: work });
      expect(run.exitCode, run.stderr).toBe(2);
      expect(run.stderr).toContain('1 dump(s) in it have no manifest (lms_20250101_020000.dump)');
      expect(run.stderr).toContain('lmsctl backup adopt --all');
    }
    const named = await runLmsctl(['backup', 'verify', 'lms_20250101_020000.dump'], { env: envOf(dir), cwd: work });
    expect(named.exitCode).toBe(3);
    expect(named.stderr).toContain('`lmsctl backup adopt lms_20250101_020000.dump`');

    // Retention never deletes what lmsctl neither made nor adopted, and says so once.
    await backup(contextOf(dir));
    await backup(contextOf(dir));
    const pruned = await backupPrune(contextOf(dir), { keep: 1, all: true });
    expect(pruned.leftAlone).toEqual(['lms_20250101_020000.dump']);
    expect(pruned.deleted).toHaveLength(1);
    expect(await stat(legacy)).toBeTruthy();
  });

  it('adopted in place: counted from a scratch restore, then listed, verified, drilled and restored like any other', async () => {
    const dir = await freshDir('adopt');
    const legacy = path.join(dir, 'lms_20250101_020000.dump');
    await rawDump(legacy);
    const bytes = await readFile(legacy);
    const before = await fingerprintTables(database.url);

    const result = await backupAdopt(contextOf(dir), 'lms_20250101_020000.dump');
    expect(result.adopted).toEqual([
      expect.objectContaining({ file: legacy, copiedFrom: null, archive: 'custom', database: database.name }),
    ]);
    // Adopted in place, not rewritten.
    expect(await readFile(legacy)).toEqual(bytes);
    const manifest = await readManifestFile(legacy);
    const { latest } = await projectMigrations();
    expect(manifest).toMatchObject({
      file: 'lms_20250101_020000.dump',
      adopted: { at: expect.any(String), how: expect.stringContaining('every data block read by pg_restore') },
      database: { name: database.name, host: '127.0.0.1', port: 5432 },
      migration: { version: latest.version, name: latest.name },
      encryption: null,
    });
    expect(Object.fromEntries(Object.entries(before).map(([table, fingerprint]) => [table, fingerprint.rows]))).toEqual(
      manifest.tables,
    );
    expect(await adoptScratchDatabases()).toEqual([]);

    const listed = (await backupList(contextOf(dir))).backups;
    expect(listed).toEqual([
      expect.objectContaining({ file: 'lms_20250101_020000.dump', adopted: true, verified: true }),
    ]);
    const shown = await runLmsctl(['backup', 'list'], { env: envOf(dir), cwd: work });
    expect(shown.stdout).toContain('lms_20250101_020000.dump (adopted)');
    await expect(backupVerify(contextOf(dir), 'latest', { deep: true })).resolves.toMatchObject({ ok: true });
    const drilled = await drill(contextOf(dir));
    expect(drilled.report.verdict).toBe('pass');
    expect(drilled.report.backup.file).toBe('lms_20250101_020000.dump');

    const client = await connectClient(database.url);
    try {
      await client.query('DELETE FROM enrollments');
    } finally {
      await client.end();
    }
    const restored = (await restore(contextOf(dir), 'latest', {
      dropPrevious: true,
      pauseQueues: false,
    })) as RestoreResult;
    expect(restored.backup).toBe(legacy);
    expect(await fingerprintTables(database.url)).toEqual(before);

    await expect(backupAdopt(contextOf(dir), legacy)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('already has a manifest'),
    });
  });

  it('a directory dump from elsewhere is copied in under its time; adopt --all takes every dump without a manifest', async () => {
    const dir = await freshDir('elsewhere');
    const outside = path.join(work, 'dba-copy.d');
    await rawDump(outside, 'directory');
    const keyFile = path.join(work, 'adopt.key');
    await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
    const copied = await backupAdopt(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), outside);
    const adopted = copied.adopted[0]!;
    expect(adopted).toMatchObject({ archive: 'directory', copiedFrom: outside });
    expect(path.dirname(adopted.file)).toBe(dir);
    expect(path.basename(adopted.file)).toMatch(/^lms_\d{8}_\d{6}\.dump\.d$/);
    // The original stays where it was.
    expect((await readdir(outside)).sort()).toEqual((await readdir(adopted.file)).sort());
    const manifest = await readManifestFile(adopted.file);
    expect(manifest).toMatchObject({ archive: 'directory', formatVersion: 2, signature: { algorithm: 'hmac-sha256' } });
    await expect(backupVerify(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), adopted.file)).resolves.toMatchObject({
      ok: true,
    });

    await rawDump(path.join(dir, 'lms_20240101_020000.dump'));
    await rawDump(path.join(dir, 'lms_20240102_020000.dump'));
    const all = await backupAdopt(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), undefined, { all: true });
    expect(all.adopted.map((entry) => path.basename(entry.file))).toEqual([
      'lms_20240101_020000.dump',
      'lms_20240102_020000.dump',
    ]);
    expect((await backupList(contextOf(dir))).notBackups).toEqual([]);
    expect((await backupAdopt(contextOf(dir), undefined, { all: true })).adopted).toEqual([]);
  });

  it('refuses a damaged dump (exit 3) and writes no manifest; a dump lmsctl encrypted cannot be adopted', async () => {
    const dir = await freshDir('damaged');
    const cut = path.join(dir, 'lms_20250102_020000.dump');
    await rawDump(cut);
    await truncate(cut, Math.floor((await stat(cut)).size * 0.7));
    const run = await runLmsctl(['backup', 'adopt', 'lms_20250102_020000.dump'], { env: envOf(dir), cwd: work });
    expect(run.exitCode, run.stderr).toBe(3);
    // A small dump is mostly table of contents: the cut may reach it, or only the data.
    expect(run.stderr).toMatch(/not a readable pg_dump archive|pg_restore could not read every data block/);
    expect((await readdir(dir)).filter((name) => name.endsWith('.json'))).toEqual([]);
    expect(await adoptScratchDatabases()).toEqual([]);

    const keyFile = path.join(work, 'damaged.key');
    await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
    const encrypted = await backup(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), { encrypt: true });
    await rm(manifestPathOf(encrypted.file));
    await expect(backupAdopt(contextOf(dir), encrypted.file)).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('was encrypted by lmsctl and has lost its manifest'),
    });
  });
});
