import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, listDatabases, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex, keyIdOf } from '../../backup/archive/crypto.js';
import { manifestPathOf, signManifest, type BackupManifest } from '../../backup/archive/manifest.js';
import { backupFileName } from '../../backup/archive/store.js';
import { dropDatabasesOf, seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { fingerprintTables } from '../../testing/rich-fixture.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { backupList } from './list.js';
import { backupVerify } from './verify.js';

/**
 * With LMS_BACKUP_KEY_FILE set every manifest carries an HMAC of the key, encrypted or not;
 * under LMS_BACKUP_REQUIRE_SIGNED a backup without one (or signed with another key) is refused.
 */
let database: TestDatabase;
let work: string;
let keyFile: string;
let keyHex: string;

beforeAll(async () => {
  database = await createTestDatabase('backup_signed');
  await seedLmsDatabase(database.url, { users: 30 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-signed-'));
  keyHex = generateBackupKeyHex();
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, keyHex, { mode: 0o600 });
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

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

/**
 * What someone who can write the backup folder, but has no key, can do: copy a real dump under a
 * newer name and give it a manifest with the plain digest anyone can compute.
 */
async function forgeUnsigned(original: string, dir: string): Promise<string> {
  const forged = path.join(
    dir,
    backupFileName(new Date(Date.now() + 60_000), 1, original.endsWith('.d') ? 'directory' : 'custom'),
  );
  await cp(original, forged, { recursive: true });
  const { signature: _signature, ...body } = await readManifestFile(original);
  await writeFile(manifestPathOf(forged), JSON.stringify(signManifest({ ...body, file: path.basename(forged) })));
  return forged;
}

describe('signed manifests', () => {
  it('a plain backup is signed with the key when LMS_BACKUP_KEY_FILE is set, and verifies only with that key', async () => {
    const dir = await freshDir('plain-signed');
    for (const options of [{}, { jobs: 2 }]) {
      const made = await backup(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), options);
      expect(made).toMatchObject({ signed: true, encrypted: false });
      const manifest = await readManifestFile(made.file);
      expect(manifest.encryption).toBeNull();
      expect(manifest.signature).toMatchObject({
        algorithm: 'hmac-sha256',
        keyId: keyIdOf(Buffer.from(keyHex, 'hex')),
      });
      await expect(backupVerify(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), made.file)).resolves.toMatchObject({
        ok: true,
      });
      // Without the key the signature cannot be checked: a usage error saying what to set.
      await expect(backupVerify(contextOf(dir), made.file)).rejects.toMatchObject({
        exitCode: 2,
        message: expect.stringContaining('LMS_BACKUP_KEY_FILE is not set'),
      });
      const otherKey = path.join(work, 'other.key');
      await writeFile(otherKey, generateBackupKeyHex());
      await expect(backupVerify(contextOf(dir, { LMS_BACKUP_KEY_FILE: otherKey }), made.file)).rejects.toMatchObject({
        exitCode: 3,
        message: expect.stringContaining('this backup was signed with another key'),
      });
    }
    expect((await backupList(contextOf(dir))).backups.every((info) => info.signed)).toBe(true);
    // Without a key the manifest carries the plain digest, as before.
    const unsigned = await backup(contextOf(await freshDir('no-key')));
    expect(unsigned.signed).toBe(false);
    expect((await readManifestFile(unsigned.file)).signature.algorithm).toBe('sha256');
  });
});

describe('LMS_BACKUP_REQUIRE_SIGNED', () => {
  // A getter: the key file is made in beforeAll, after this block is collected.
  const strict = () => ({ LMS_BACKUP_KEY_FILE: keyFile, LMS_BACKUP_REQUIRE_SIGNED: 'true' });

  it('refuses a forged unsigned backup: restore, drill, verify and latest exit 3 naming why; the target is untouched', async () => {
    const dir = await freshDir('forged');
    const genuine = await backup(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }));
    const forged = await forgeUnsigned(genuine.file, dir);
    const before = await fingerprintTables(database.url);

    const restore = await runLmsctl(['restore', 'latest', '--yes', '--no-pause-queues'], {
      env: envOf(dir, strict()),
      cwd: work,
    });
    expect(restore.exitCode, restore.stderr).toBe(3);
    expect(restore.stderr).toContain(`the newest backup, ${path.basename(forged)}, is not signed with the backup key`);
    expect(restore.stderr).toContain('LMS_BACKUP_REQUIRE_SIGNED is on');
    const named = await runLmsctl(['restore', path.basename(forged), '--yes', '--no-pause-queues'], {
      env: envOf(dir, strict()),
      cwd: work,
    });
    expect(named.exitCode, named.stderr).toBe(3);
    expect(named.stderr).toContain(`${path.basename(forged)} is not signed with the backup key`);
    expect(await fingerprintTables(database.url)).toEqual(before);
    expect((await listDatabases(database.name)).filter((name) => name !== database.name)).toEqual([]);

    await expect(backupVerify(contextOf(dir, strict()), 'latest')).rejects.toMatchObject({ exitCode: 3 });
    const drilled = await drill(contextOf(dir, strict()), { backup: forged });
    expect(drilled.report.verdict).toBe('fail');
    expect(drilled.report.scratch.created).toBe(false);
    expect(drilled.report.checks[0]).toMatchObject({ ok: false, found: expect.stringContaining('is not signed') });
    const routine = await runLmsctl(['drill'], { env: envOf(dir, strict()), cwd: work });
    expect(routine.exitCode).toBe(3);
    expect(routine.stderr).toContain('is not signed with the backup key');

    // The genuine one, named, still restores; without the setting the forged one verifies.
    await expect(backupVerify(contextOf(dir, strict()), genuine.file)).resolves.toMatchObject({ ok: true });
    await expect(backupVerify(contextOf(dir), forged)).resolves.toMatchObject({ ok: true });
  });

  it('refuses a manifest re-signed with another key, and one whose HMAC was recomputed wrongly', async () => {
    const dir = await freshDir('resigned');
    const made = await backup(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }), { jobs: 2 });
    const { signature, ...body } = await readManifestFile(made.file);

    const attackerKey = Buffer.from(generateBackupKeyHex(), 'hex');
    await writeFile(
      manifestPathOf(made.file),
      JSON.stringify(signManifest(body, { key: attackerKey, keyId: keyIdOf(attackerKey) })),
    );
    const other = await runLmsctl(['restore', 'latest', '--yes', '--no-pause-queues'], {
      env: envOf(dir, strict()),
      cwd: work,
    });
    expect(other.exitCode, other.stderr).toBe(3);
    expect(other.stderr).toContain('this backup was signed with another key');

    await writeFile(
      manifestPathOf(made.file),
      JSON.stringify({ ...body, tables: { ...body.tables, 'public.users': 1 }, signature }),
    );
    await expect(backupVerify(contextOf(dir, strict()), 'latest')).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('modified after the backup was written'),
    });
  });

  it('migrate --require-backup counts only signed backups under it', async () => {
    const dir = await freshDir('migrate');
    const genuine = await backup(contextOf(dir));
    expect(genuine.signed).toBe(false);
    const refused = await runLmsctl(['migrate', '--require-backup', '24h'], { env: envOf(dir, strict()), cwd: work });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('it has no verified, signed backup');
    await backup(contextOf(dir, { LMS_BACKUP_KEY_FILE: keyFile }));
    const allowed = await runLmsctl(['migrate', '--require-backup', '24h'], { env: envOf(dir, strict()), cwd: work });
    expect(allowed.exitCode, allowed.stderr).toBe(0);
  });
});
