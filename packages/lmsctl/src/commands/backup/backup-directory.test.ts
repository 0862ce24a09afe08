import { createHash } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, listDatabases, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf, type BackupManifest } from '../../backup/archive/manifest.js';
import { fakePgBinDir, seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import {
  createRichFixture,
  describeSchema,
  fingerprintTables,
  nextSequenceValues,
} from '../../testing/rich-fixture.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { backupPrune } from '../../backup/retention.js';
import { restore, type RestoreResult } from '../restore/restore.js';
import type { StatusResult } from '../status.js';
import { backupBundle } from './bundle.js';
import { backupList } from './list.js';
import { backupVerify } from './verify.js';

/**
 * Directory-format backups (`backup --jobs N`): written by parallel pg_dump workers on the
 * backup's snapshot, published as `lms_….dump.d/`, and taken by every command that takes a
 * backup.
 */
let work: string;
let keyFile: string;
let rich: TestDatabase;
let lms: TestDatabase;
const restored: string[] = [];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-backup-dir-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, `${generateBackupKeyHex()}\n`, { mode: 0o600 });
  rich = await createTestDatabase('backup_dir_rich');
  await createRichFixture(rich.url);
  lms = await createTestDatabase('backup_dir_lms');
  await seedLmsDatabase(lms.url, { users: 40 });
});

afterAll(async () => {
  const admin = await connectClient(withDatabase(lms.url, 'postgres'));
  try {
    const mine = [
      ...(await listDatabases(rich.name)),
      ...(await listDatabases(lms.name)),
      ...(await Promise.all(restored.map((name) => listDatabases(name)))).flat(),
    ];
    for (const name of mine) await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  await rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

function envOf(database: TestDatabase, dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: dir,
    LMS_DRILL_DIR: path.join(dir, 'drills'),
    ...extra,
  };
}

const contextOf = (database: TestDatabase, dir: string, extra: Record<string, string> = {}, yes = true) =>
  testContext({ cwd: work, yes, env: envOf(database, dir, extra) }).ctx;

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

/** `sha256sum *` inside the folder, as an operator would check it by hand. */
async function sha256sumListing(folder: string): Promise<string> {
  const names = (await readdir(folder)).sort();
  const { stdout } = await execa('sha256sum', names, { cwd: folder });
  return `${stdout}\n`;
}

describe('backup --jobs 2', () => {
  it('restores a schema with many types to identical per-table digests, with --jobs 2', async () => {
    const dir = await freshDir('rich');
    const fingerprints = await fingerprintTables(rich.url);
    const schema = await describeSchema(rich.url);
    const sequences = await nextSequenceValues(rich.url);
    const made = await backup(contextOf(rich, dir), { jobs: 2 });
    expect(path.basename(made.file)).toMatch(/^lms_\d{8}_\d{6}\.dump\.d$/);
    expect(made).toMatchObject({ archive: 'directory', jobs: 2 });
    expect((await stat(made.file)).mode & 0o777).toBe(0o700);

    const manifest = await readManifestFile(made.file);
    const names = (await readdir(made.file)).sort();
    expect(names).toContain('toc.dat');
    expect(manifest).toMatchObject({
      formatVersion: 2,
      archive: 'directory',
      jobs: 2,
      compression: '1',
      file: path.basename(made.file),
      encryption: null,
    });
    // A checksum per file, and the manifest's sha256 over the `sha256sum` listing of them all.
    expect(manifest.files!.map((file) => file.name)).toEqual(names);
    for (const file of manifest.files!) {
      const bytes = await readFile(path.join(made.file, file.name));
      expect(file).toEqual({
        name: file.name,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        sizeBytes: bytes.length,
      });
      expect((await stat(path.join(made.file, file.name))).mode & 0o777).toBe(0o600);
    }
    expect(manifest.sha256).toBe(
      createHash('sha256')
        .update(await sha256sumListing(made.file))
        .digest('hex'),
    );
    expect(manifest.sizeBytes).toBe(manifest.files!.reduce((sum, file) => sum + file.sizeBytes, 0));
    expect(Object.keys(manifest.tables!).sort()).toEqual(Object.keys(fingerprints).sort());
    // Only the folder, its manifest and its verification record: no temporary leftovers.
    expect((await readdir(dir)).sort()).toEqual(
      [path.basename(made.file), `${path.basename(made.file)}.json`, `${path.basename(made.file)}.verify.json`].sort(),
    );

    const target = `${rich.name}_copy`;
    restored.push(target);
    const targetUrl = withDatabase(rich.url, target);
    const result = (await restore(contextOf(rich, dir), 'latest', {
      jobs: 2,
      targetDatabaseUrl: targetUrl,
      create: true,
      fromDatabase: rich.name,
      pauseQueues: false,
    })) as RestoreResult;
    expect(result.tables).toBe(Object.keys(fingerprints).length);
    expect(await fingerprintTables(targetUrl)).toEqual(fingerprints);
    expect(await describeSchema(targetUrl)).toEqual(schema);
    expect(await nextSequenceValues(targetUrl)).toEqual(sequences);
  });

  it('is the default with BACKUP_JOBS=2, and counts rows inside the snapshot while writes go on', async () => {
    const dir = await freshDir('consistency');
    const writer = await connectClient(lms.url);
    let writing = true;
    const writes = (async () => {
      for (let index = 0; writing; index++) {
        await writer.query(`INSERT INTO audit_log (action, entity_type, details) VALUES ('test.write', 'test', $1)`, [
          JSON.stringify({ index }),
        ]);
      }
    })();
    try {
      const made = await backup(contextOf(lms, dir, { BACKUP_JOBS: '2' }));
      expect(made.archive).toBe('directory');
      const manifest = await readManifestFile(made.file);
      const scratch = await createTestDatabase('backup_dir_count');
      try {
        await execa('pg_restore', ['--no-owner', '--exit-on-error', `--dbname=${scratch.url}`, made.file]);
        const client = await connectClient(scratch.url);
        try {
          const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM audit_log');
          expect(Number(rows[0]!.n)).toBe(manifest.tables!['public.audit_log']);
        } finally {
          await client.end();
        }
      } finally {
        await scratch.drop();
      }
    } finally {
      writing = false;
      await writes;
      await writer.query('DELETE FROM audit_log');
      await writer.end();
    }
  });

  it('--encrypt encrypts every file on its own; verify, restore and drill decrypt them with the key only', async () => {
    const dir = await freshDir('encrypted');
    const env = { LMS_BACKUP_KEY_FILE: keyFile };
    const before = await fingerprintTables(lms.url);
    const made = await backup(contextOf(lms, dir, env), { jobs: 2, encrypt: true });
    const manifest = await readManifestFile(made.file);
    expect(manifest.encryption).toMatchObject({ algorithm: 'aes-256-gcm-chunked-v1' });
    expect(manifest.signature.algorithm).toBe('hmac-sha256');
    for (const name of await readdir(made.file)) {
      const bytes = await readFile(path.join(made.file, name));
      expect(bytes.subarray(0, 8).toString()).toBe('LMSENC01');
      expect(bytes.includes(Buffer.from('PGDMP'))).toBe(false);
    }
    // No plaintext folder was left behind.
    expect((await readdir(dir)).filter((name) => name.startsWith('.'))).toEqual([]);

    await expect(backupVerify(contextOf(lms, dir, env), 'latest')).resolves.toMatchObject({
      ok: true,
      encrypted: true,
    });
    const otherKey = path.join(work, 'other.key');
    await writeFile(otherKey, generateBackupKeyHex());
    await expect(backupVerify(contextOf(lms, dir, { LMS_BACKUP_KEY_FILE: otherKey }), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('key id'),
    });
    // A wrong key says nothing about the backup: still recorded as verified.
    expect((await backupList(contextOf(lms, dir))).backups[0]).toMatchObject({ verification: 'verified' });

    await writer(lms.url, 'DELETE FROM enrollments');
    const result = (await restore(contextOf(lms, dir, env), 'latest', {
      jobs: 2,
      dropPrevious: true,
      pauseQueues: false,
    })) as RestoreResult;
    expect(result.previousDropped).toBe(true);
    expect(await fingerprintTables(lms.url)).toEqual(before);
    const drilled = await drill(contextOf(lms, dir, env), { jobs: 2 });
    expect(drilled.report.verdict).toBe('pass');
    expect(drilled.report.backup.file).toBe(path.basename(made.file));
    // The decrypted working copies are gone.
    expect((await readdir(dir)).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});

async function writer(url: string, sql: string): Promise<void> {
  const client = await connectClient(url);
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

describe('verify of a directory backup', () => {
  async function made(name: string) {
    const dir = await freshDir(name);
    const result = await backup(contextOf(lms, dir), { jobs: 2 });
    const manifest = await readManifestFile(result.file);
    const biggest = [...manifest.files!].sort((a, b) => b.sizeBytes - a.sizeBytes)[0]!;
    return { dir, folder: result.file, data: path.join(result.file, biggest.name) };
  }

  it('exits 3 on a missing, an added, a truncated or a changed file, and records the failure', async () => {
    const missing = await made('verify-missing');
    await rm(missing.data);
    await expect(backupVerify(contextOf(lms, missing.dir), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('which its manifest lists'),
    });
    expect((await backupList(contextOf(lms, missing.dir))).backups[0]).toMatchObject({ verification: 'failed' });

    const added = await made('verify-added');
    await writeFile(path.join(added.folder, '9999.dat.gz'), 'extra');
    await expect(backupVerify(contextOf(lms, added.dir), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('9999.dat.gz, which its manifest does not list'),
    });

    const cut = await made('verify-truncated');
    await truncate(cut.data, (await stat(cut.data)).size - 10);
    await expect(backupVerify(contextOf(lms, cut.dir), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('truncated or replaced'),
    });

    const flipped = await made('verify-flipped');
    const bytes = await readFile(flipped.data);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(flipped.data, bytes);
    await expect(backupVerify(contextOf(lms, flipped.dir), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining("does not match its manifest's sha256"),
    });
    // A restore refuses it too, before the target is touched.
    const refused = await restore(contextOf(lms, flipped.dir), 'latest', { pauseQueues: false }).catch(
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({ exitCode: 3 });
  });

  it('takes a folder named with a trailing slash, and refuses a folder that is no backup', async () => {
    const good = await made('verify-slash');
    await expect(backupVerify(contextOf(lms, good.dir), `${good.folder}/`)).resolves.toMatchObject({ ok: true });
    const stray = path.join(good.dir, 'lms_20200101_000000.dump.d');
    await mkdir(stray);
    await expect(backupVerify(contextOf(lms, good.dir), stray)).rejects.toMatchObject({ exitCode: 2 });
  });
});

describe('a directory backup among the others', () => {
  it('a killed parallel pg_dump leaves nothing that looks like a backup (exit 1)', async () => {
    const dir = await freshDir('killed');
    const bin = await fakePgBinDir({
      pg_dump: 'case "$1" in --version) exec "$REAL" --version;; esac\n"$REAL" "$@" & sleep 0.3; kill -9 $! $$',
    });
    try {
      const error = await backup(contextOf(lms, dir, { LMS_PG_BIN_DIR: bin }), { jobs: 2 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ exitCode: 1, message: expect.stringMatching(/^pg_dump failed: /) });
      expect(await readdir(dir)).toEqual([]);
      expect((await backupList(contextOf(lms, dir))).backups).toEqual([]);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it('is listed, bundled as its folder, pruned with its files, and counted by status and migrate --require-backup', async () => {
    const dir = await freshDir('mixed');
    const older = await backup(contextOf(lms, dir));
    const newer = await backup(contextOf(lms, dir), { jobs: 2 });
    const listed = await backupList(contextOf(lms, dir));
    expect(listed.backups.map((info) => [info.file, info.archive, info.verified])).toEqual([
      [path.basename(newer.file), 'directory', true],
      [path.basename(older.file), 'custom', true],
    ]);
    expect(listed.backups[0]!.sizeBytes).toBe(newer.sizeBytes);

    const out = path.join(work, 'mixed.tar.gz');
    const bundle = await backupBundle(contextOf(lms, dir), 'latest', { out });
    const members = (await execa('tar', ['-tzf', out])).stdout.split('\n').sort();
    const folder = path.basename(newer.file);
    expect(members).toEqual(
      [
        `${folder}/`,
        ...(await readdir(newer.file)).map((name) => `${folder}/${name}`),
        `${folder}.json`,
        `${folder}.verify.json`,
      ].sort(),
    );
    expect(bundle.bundle).toBe(out);
    // Unpacked elsewhere, the folder verifies and restores like the original.
    const unpacked = await freshDir('unpacked');
    await execa('tar', ['-xzf', out, '-C', unpacked]);
    await expect(backupVerify(contextOf(lms, unpacked), 'latest')).resolves.toMatchObject({ ok: true });

    const env = envOf(lms, dir);
    const status = await runLmsctl(['status', '--json', '--api-url', 'http://127.0.0.1:1'], { env, cwd: work });
    const item = (JSON.parse(status.stdout) as StatusResult).items.find((entry) => entry.name === 'backup');
    expect(item?.data).toMatchObject({ file: folder, verified: true, sizeBytes: newer.sizeBytes });
    const migrate = await runLmsctl(['migrate', '--require-backup', '24h'], { env, cwd: work });
    expect(migrate.exitCode, migrate.stderr).toBe(0);

    // The older single file is pruned; the newest (the folder) is kept. Then the folder goes too.
    const pruned = await backupPrune(contextOf(lms, dir), { keep: 1 });
    expect(pruned.deleted.map((entry) => entry.file)).toEqual([path.basename(older.file)]);
    const third = await backup(contextOf(lms, dir));
    const again = await backupPrune(contextOf(lms, dir), { keep: 1 });
    expect(again.deleted.map((entry) => entry.file)).toEqual([folder]);
    expect((await readdir(dir)).filter((name) => name.startsWith('lms_')).sort()).toEqual(
      [
        path.basename(third.file),
        `${path.basename(third.file)}.json`,
        `${path.basename(third.file)}.verify.json`,
      ].sort(),
    );
  });

  it('backup --jobs 2 from the real binary writes a folder that verifies', async () => {
    const dir = await freshDir('cli');
    const run = await runLmsctl(['backup', '--jobs', '2', '--json'], { env: envOf(lms, dir), cwd: work });
    expect(run.exitCode, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { file: string; archive: string; jobs: number };
    expect(result).toMatchObject({ archive: 'directory', jobs: 2 });
    const verify = await runLmsctl(['backup', 'verify', path.basename(result.file), '--dir', dir], {
      env: envOf(lms, dir),
      cwd: work,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
    // A data file damaged after the fact: exit 3 from the binary too.
    await appendFile(path.join(result.file, 'toc.dat'), 'x');
    const damaged = await runLmsctl(['backup', 'verify', 'latest', '--dir', dir], { env: envOf(lms, dir), cwd: work });
    expect(damaged.exitCode).toBe(3);
  });
});
