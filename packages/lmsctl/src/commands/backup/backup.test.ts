import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf, signManifest, type BackupManifest } from '../../backup/archive/manifest.js';
import {
  fakePgBinDir,
  projectMigrations,
  publicTableCount,
  rowCount,
  seedLmsDatabase,
} from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { backupBundle } from './bundle.js';
import { backupList } from './list.js';
import { backupPrune } from '../../backup/retention.js';
import { backupVerify } from './verify.js';

let database: TestDatabase;
let work: string;
let keyFile: string;

beforeAll(async () => {
  database = await createTestDatabase('backup');
  await seedLmsDatabase(database.url, { users: 40 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-backup-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, `${generateBackupKeyHex()}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

function contextFor(dir: string, extra: Record<string, string> = {}, yes = false) {
  return testContext({
    cwd: work,
    yes,
    env: { DATABASE_URL: database.url, LMS_BACKUP_DIR: dir, LMS_DRILL_DIR: path.join(dir, 'drills'), ...extra },
  });
}

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

describe('lmsctl backup', () => {
  it('writes lms_YYYYMMDD_HHMMSS.dump, owner-only, with a signed manifest of the snapshot', async () => {
    const dir = await freshDir('plain');
    const before = new Date();
    const { ctx } = contextFor(dir);
    const result = await backup(ctx);
    expect(path.basename(result.file)).toMatch(/^lms_\d{8}_\d{6}\.dump$/);
    expect((await stat(result.file)).mode & 0o777).toBe(0o600);
    expect((await stat(result.manifest)).mode & 0o777).toBe(0o600);

    const manifest = await readManifestFile(result.file);
    const { sha256 } = await execa('sha256sum', [result.file]).then((run) => ({ sha256: run.stdout.split(' ')[0] }));
    expect(manifest).toMatchObject({
      file: path.basename(result.file),
      sha256,
      sizeBytes: (await stat(result.file)).size,
      encryption: null,
      database: { name: database.name, host: '127.0.0.1', port: 5432 },
      migration: { version: (await projectMigrations()).latest.version, name: (await projectMigrations()).latest.name },
      pgDump: { version: expect.stringMatching(/^\d+\.\d+/) },
      lmsctl: { version: expect.any(String) },
      signature: { algorithm: 'sha256' },
    });
    expect(manifest.tables).toMatchObject({
      'public.users': 40,
      'public.courses': 4,
      'public.enrollments': 72,
      'public.schema_migrations': (await projectMigrations()).count,
      'public.audit_log': 0,
    });
    expect(new Date(manifest.startedAt).getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
    expect(JSON.stringify(manifest)).not.toContain('password');
    // Nothing but the backup, its manifest and its verification record is left in the folder.
    expect((await readdir(dir)).sort()).toEqual(
      [
        path.basename(result.file),
        `${path.basename(result.file)}.json`,
        `${path.basename(result.file)}.verify.json`,
      ].sort(),
    );
  });

  it('never overwrites: backups started in the same second get distinct names', async () => {
    const dir = await freshDir('same-second');
    const results = await Promise.all([0, 1, 2].map(() => backup(contextFor(dir).ctx)));
    const names = results.map((result) => path.basename(result.file));
    expect(new Set(names).size).toBe(3);
    const list = await backupList(contextFor(dir).ctx);
    expect(list.backups).toHaveLength(3);
    expect(list.backups.every((info) => info.complete && info.verified)).toBe(true);
  });

  it('counts rows inside the exported snapshot while writes go on', async () => {
    const dir = await freshDir('consistency');
    const { connectClient } = await import('@lms/core');
    const writer = await connectClient(database.url);
    let writing = true;
    const writes = (async () => {
      for (let index = 0; writing; index++) {
        await writer.query(`INSERT INTO audit_log (action, entity_type, details) VALUES ('test.write', 'test', $1)`, [
          JSON.stringify({ index }),
        ]);
      }
    })();
    try {
      const result = await backup(contextFor(dir).ctx);
      const manifest = await readManifestFile(result.file);
      // What the dump holds: restore just that table's data into a scratch database and count it.
      const scratch = await createTestDatabase('backup_count');
      try {
        await execa('pg_restore', ['--no-owner', '--exit-on-error', `--dbname=${scratch.url}`, result.file]);
        expect(await rowCount(scratch.url, 'audit_log')).toBe(manifest.tables!['public.audit_log']);
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

  it('--no-counts leaves the counts out', async () => {
    const dir = await freshDir('no-counts');
    const result = await backup(contextFor(dir).ctx, { counts: false });
    expect(result.tables).toBeNull();
    expect((await readManifestFile(result.file)).tables).toBeNull();
  });

  it('--encrypt writes no plaintext, signs the manifest with the key and verifies only with that key', async () => {
    const dir = await freshDir('encrypted');
    const result = await backup(contextFor(dir, { LMS_BACKUP_KEY_FILE: keyFile }).ctx, { encrypt: true });
    const bytes = await readFile(result.file);
    expect(bytes.subarray(0, 8).toString()).toBe('LMSENC01');
    expect(bytes.includes(Buffer.from('user7@example.com'))).toBe(false);
    expect(bytes.includes(Buffer.from('PGDMP'))).toBe(false);
    const manifest = await readManifestFile(result.file);
    expect(manifest.encryption).toMatchObject({
      algorithm: 'aes-256-gcm-chunked-v1',
      keyId: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(manifest.signature.algorithm).toBe('hmac-sha256');

    await expect(backupVerify(contextFor(dir, { LMS_BACKUP_KEY_FILE: keyFile }).ctx, 'latest')).resolves.toMatchObject({
      ok: true,
      encrypted: true,
    });
    const otherKey = path.join(work, 'other.key');
    await writeFile(otherKey, generateBackupKeyHex());
    const wrong = await backupVerify(contextFor(dir, { LMS_BACKUP_KEY_FILE: otherKey }).ctx, 'latest').catch(
      (e: unknown) => e,
    );
    expect(wrong).toMatchObject({ exitCode: 3 });
    expect(String((wrong as Error).message)).toMatch(/key id/);
    const none = await backupVerify(contextFor(dir).ctx, 'latest').catch((e: unknown) => e);
    expect(none).toMatchObject({ exitCode: 2, message: expect.stringContaining('LMS_BACKUP_KEY_FILE is not set') });
  });

  it('refuses a key kept in the backup folder, and --encrypt without a key', async () => {
    const dir = await freshDir('key-inside');
    const inside = path.join(dir, 'key.hex');
    await writeFile(inside, generateBackupKeyHex());
    await expect(backup(contextFor(dir, { LMS_BACKUP_KEY_FILE: inside }).ctx, { encrypt: true })).rejects.toMatchObject(
      { exitCode: 2 },
    );
    await expect(backup(contextFor(dir).ctx, { encrypt: true })).rejects.toMatchObject({ exitCode: 2 });
    expect((await readdir(dir)).filter((name) => name.endsWith('.dump'))).toEqual([]);
  });
});

describe('lmsctl backup verify', () => {
  async function makeBackup(name: string) {
    const dir = await freshDir(name);
    const result = await backup(contextFor(dir).ctx);
    return { dir, file: result.file };
  }

  it('passes a good backup', async () => {
    const { dir } = await makeBackup('verify-good');
    await expect(backupVerify(contextFor(dir).ctx, 'latest')).resolves.toMatchObject({
      ok: true,
      tables: await publicTableCount(database.url),
    });
  });

  it('exits 3 on a flipped byte, a truncated file or an edited manifest, and records the failure', async () => {
    const flipped = await makeBackup('verify-flipped');
    const bytes = await readFile(flipped.file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(flipped.file, bytes);
    await expect(backupVerify(contextFor(flipped.dir).ctx, 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining("does not match its manifest's sha256"),
    });
    expect((await backupList(contextFor(flipped.dir).ctx)).backups[0]!.verified).toBe(false);

    const cut = await makeBackup('verify-truncated');
    await truncate(cut.file, (await stat(cut.file)).size - 100);
    await expect(backupVerify(contextFor(cut.dir).ctx, 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('truncated or replaced'),
    });

    const edited = await makeBackup('verify-manifest');
    const manifest = await readManifestFile(edited.file);
    manifest.tables!['public.users'] = 41;
    await writeFile(manifestPathOf(edited.file), JSON.stringify(manifest));
    await expect(backupVerify(contextFor(edited.dir).ctx, 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('modified after the backup was written'),
    });
  });

  it('exits 3 from the real binary, 0 for a good backup', async () => {
    const good = await makeBackup('verify-cli');
    const ok = await runLmsctl(['backup', 'verify', 'latest', '--dir', good.dir], {
      env: { DATABASE_URL: database.url },
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    await writeFile(good.file, 'not a dump at all');
    const bad = await runLmsctl(['backup', 'verify', path.basename(good.file), '--dir', good.dir]);
    expect(bad.exitCode).toBe(3);
  });
});

describe('pg_dump trouble', () => {
  it('a killed pg_dump leaves nothing that looks like a backup (exit 1)', async () => {
    const dir = await freshDir('killed');
    const bin = await fakePgBinDir({
      pg_dump: 'case "$1" in --version) exec "$REAL" --version;; esac\n"$REAL" "$@" & sleep 0.3; kill -9 $! $$',
    });
    try {
      const error = await backup(contextFor(dir, { LMS_PG_BIN_DIR: bin }).ctx).catch((e: unknown) => e);
      expect(error).toMatchObject({
        exitCode: 1,
        message: expect.stringMatching(/^pg_dump failed: .*killed by SIGKILL/),
      });
      expect(await readdir(dir)).toEqual([]);
      expect((await backupList(contextFor(dir).ctx)).backups).toEqual([]);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it('says what to install when pg_dump is missing or older than the server', async () => {
    const dir = await freshDir('tools');
    const missing = await backup(contextFor(dir, { LMS_PG_BIN_DIR: path.join(work, 'no-such-dir') }).ctx).catch(
      (e: unknown) => e,
    );
    expect(missing).toMatchObject({
      exitCode: 1,
      message: expect.stringMatching(/^pg_dump not found in .*install the PostgreSQL client tools/),
    });

    const bin = await fakePgBinDir({ pg_dump: 'echo "pg_dump (PostgreSQL) 12.4"' });
    try {
      const old = await backup(contextFor(dir, { LMS_PG_BIN_DIR: bin }).ctx).catch((e: unknown) => e);
      expect(old).toMatchObject({
        exitCode: 1,
        message: expect.stringMatching(
          /^pg_dump 12\.4 cannot dump PostgreSQL 1\d\.\d+: install the PostgreSQL 1\d client tools/,
        ),
      });
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });
});

describe('lmsctl backup prune, list and bundle', () => {
  /** Copies one real backup under older names, re-signing each manifest, to build a history. */
  async function history(name: string, ages: number[]): Promise<string> {
    const dir = await freshDir(name);
    const result = await backup(contextFor(dir).ctx);
    const original = await readManifestFile(result.file);
    const bytes = await readFile(result.file);
    for (const hoursAgo of ages) {
      const at = new Date(Date.now() - hoursAgo * 3_600_000);
      const stamp = at.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
      const file = path.join(dir, `lms_${stamp}.dump`);
      await writeFile(file, bytes, { mode: 0o600 });
      const { signature: _signature, ...body } = original;
      const manifest = signManifest({
        ...body,
        file: path.basename(file),
        startedAt: at.toISOString(),
        finishedAt: at.toISOString(),
      });
      await writeFile(manifestPathOf(file), JSON.stringify(manifest));
    }
    return dir;
  }

  it('keeps the N newest and the newest drilled backup; --dry-run deletes nothing; asks without --yes', async () => {
    const dir = await history('prune', [24, 48, 72, 96]);
    const before = (await backupList(contextFor(dir).ctx)).backups.map((info) => info.file);
    expect(before).toHaveLength(5);
    // A passed drill of the oldest one.
    const drills = path.join(dir, 'drills');
    await mkdir(drills);
    const oldest = before.at(-1)!;
    const oldestManifest = await readManifestFile(path.join(dir, oldest));
    await writeFile(
      path.join(drills, 'drill_20260101_000000.json'),
      JSON.stringify({
        backup: { file: oldest, sha256: oldestManifest.sha256 },
        verdict: 'pass',
        finishedAt: new Date().toISOString(),
      }),
    );

    const dry = await backupPrune(contextFor(dir).ctx, { keep: 2, dryRun: true });
    expect(dry.deleted.map((entry) => entry.file)).toEqual(before.slice(2, 4));
    expect(dry.kept.find((entry) => entry.file === oldest)?.reason).toBe('newest backup that passed a drill');
    expect((await readdir(dir)).filter((file) => file.endsWith('.dump'))).toHaveLength(5);

    await expect(backupPrune(contextFor(dir).ctx, { keep: 2 })).rejects.toMatchObject({ exitCode: 2 });
    expect((await readdir(dir)).filter((file) => file.endsWith('.dump'))).toHaveLength(5);

    const done = await backupPrune(contextFor(dir, {}, true).ctx, { keep: 2 });
    expect(done.deleted).toHaveLength(2);
    const after = (await readdir(dir)).filter((file) => file.startsWith('lms_')).sort();
    expect(after.filter((file) => file.endsWith('.dump'))).toEqual([...before.slice(0, 2), oldest].sort());
    expect(after.some((file) => before.slice(2, 4).some((gone) => file.startsWith(gone)))).toBe(false);
  });

  it('--keep-days keeps everything younger', async () => {
    const dir = await history('prune-days', [24, 60, 200]);
    const result = await backupPrune(contextFor(dir).ctx, { keep: 1, keepDays: 3, dryRun: true });
    expect(result.deleted).toHaveLength(1);
    expect(result.kept).toHaveLength(3);
  });

  it('bundles the dump, its manifest and drill reports into a tar.gz', async () => {
    const dir = await freshDir('bundle');
    const made = await backup(contextFor(dir).ctx);
    const manifest = await readManifestFile(made.file);
    const drills = path.join(dir, 'drills');
    await mkdir(drills);
    await writeFile(
      path.join(drills, 'drill_20260102_000000.json'),
      JSON.stringify({
        backup: { file: manifest.file, sha256: manifest.sha256 },
        verdict: 'pass',
        finishedAt: new Date().toISOString(),
      }),
    );
    await writeFile(path.join(drills, 'drill_20260102_000000.md'), '# drill');
    const out = path.join(work, 'offsite.tar.gz');
    const result = await backupBundle(contextFor(dir).ctx, 'latest', { out });
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const listing = (await execa('tar', ['-tzf', out])).stdout.split('\n').sort();
    expect(listing).toEqual(
      [
        manifest.file,
        `${manifest.file}.json`,
        `${manifest.file}.verify.json`,
        'drills/drill_20260102_000000.json',
        'drills/drill_20260102_000000.md',
      ].sort(),
    );
    expect(result.files).toHaveLength(5);
    await expect(backupBundle(contextFor(dir).ctx, 'latest', { out })).rejects.toMatchObject({ exitCode: 2 });
    // Named otherwise, restore would take it for a dump without a manifest: refused, nothing written.
    const unnamed = path.join(work, 'offsite-copy');
    await expect(backupBundle(contextFor(dir).ctx, 'latest', { out: unnamed })).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('ends in .tar.gz'),
    });
    await expect(stat(unnamed)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('lmsctl migrate --require-backup', () => {
  it('refuses without a recent verified backup of that database and proceeds with one', async () => {
    const dir = await freshDir('require');
    const env = { DATABASE_URL: database.url, LMS_BACKUP_DIR: dir };
    const none = await runLmsctl(['migrate', '--require-backup', '24h'], { env, cwd: work });
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('it has no verified backup');
    await backup(contextFor(dir).ctx);
    const fresh = await runLmsctl(['migrate', '--require-backup', '24h'], { env, cwd: work });
    expect(fresh.exitCode, fresh.stderr).toBe(0);
    const tooOld = await runLmsctl(['migrate', '--require-backup', '1ms'], { env, cwd: work });
    expect(tooOld.exitCode).toBe(1);
    expect(tooOld.stderr).toMatch(/is .* old, over the 1 ms allowed/);
  });
});
