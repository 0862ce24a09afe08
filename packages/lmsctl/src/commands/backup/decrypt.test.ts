import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf, type BackupManifest } from '../../backup/archive/manifest.js';
import { seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup, type BackupResult } from '../../backup/create.js';
import { backupDecrypt } from './decrypt.js';

/**
 * Reading an encrypted backup without lmsctl's restore: `backup decrypt`, and the standalone
 * Python and Node decryptors exactly as docs/backups.md prints them, each taken to a real
 * restore whose row counts must equal the manifest's.
 */
const backupsDoc = fileURLToPath(new URL('../../../../../docs/backups.md', import.meta.url));

let database: TestDatabase;
let work: string;
let keyFile: string;
let single: BackupResult;
let folder: BackupResult;
let dir: string;
const decryptors: Record<'python' | 'node', string> = { python: '', node: '' };

beforeAll(async () => {
  database = await createTestDatabase('backup_decrypt');
  await seedLmsDatabase(database.url, { users: 500 });
  // Enough data for an encrypted file of several 1 MiB chunks.
  const client = await connectClient(database.url);
  try {
    await client.query(
      `INSERT INTO audit_log (action, entity_type, details)
       SELECT 'test.fill', 'test', jsonb_build_object('n', g, 'noise', md5(g::text) || md5((g * 7)::text))
         FROM generate_series(1, 60000) g`,
    );
  } finally {
    await client.end();
  }
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-decrypt-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, `${generateBackupKeyHex()}\n`, { mode: 0o600 });
  dir = path.join(work, 'backups');
  single = await backup(contextOf(), { encrypt: true });
  folder = await backup(contextOf(), { encrypt: true, jobs: 2 });
  // The decryptors as the documentation prints them, identified by their first comment line.
  const doc = await readFile(backupsDoc, 'utf8');
  const block = (fence: string, marker: string) => {
    const found = [...doc.matchAll(new RegExp(`^\`\`\`${fence}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].find((match) =>
      match[1]!.includes(marker),
    );
    if (!found) throw new Error(`docs/backups.md has no ${fence} block with ${marker}`);
    return found[1]!;
  };
  decryptors.python = path.join(work, 'lms-decrypt.py');
  decryptors.node = path.join(work, 'lms-decrypt.mjs');
  await writeFile(decryptors.python, block('python', '# lms-decrypt.py'));
  await writeFile(decryptors.node, block('js', '// lms-decrypt.mjs'));
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

function contextOf(extra: Record<string, string> = {}) {
  return testContext({
    cwd: work,
    env: { DATABASE_URL: database.url, LMS_BACKUP_DIR: dir, LMS_BACKUP_KEY_FILE: keyFile, ...extra },
  }).ctx;
}

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

/** Stock pg_restore: the listing, then a restore into a scratch database whose counts must be the manifest's. */
async function restoresAsTheManifestSays(plain: string, backupPath: string): Promise<void> {
  const listing = await execa('pg_restore', ['--list', plain]);
  expect(listing.stdout).toContain(`dbname: ${database.name}`);
  const manifest = await readManifestFile(backupPath);
  const scratch = await createTestDatabase('backup_decrypt_restore');
  try {
    await execa('pg_restore', ['--no-owner', '--exit-on-error', '--jobs=2', `--dbname=${scratch.url}`, plain]);
    const client = await connectClient(scratch.url);
    try {
      for (const [table, rows] of Object.entries(manifest.tables!)) {
        const [schema, name] = table.split('.');
        const { rows: counted } = await client.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${client.escapeIdentifier(schema!)}.${client.escapeIdentifier(name!)}`,
        );
        expect(Number(counted[0]!.n), table).toBe(rows);
      }
    } finally {
      await client.end();
    }
  } finally {
    await scratch.drop();
  }
}

describe('lmsctl backup decrypt', () => {
  it('writes the plain archive of either kind, owner-only, which stock pg_restore restores to the manifest counts', async () => {
    const out = path.join(work, 'plain.dump');
    const run = await runLmsctl(['backup', 'decrypt', path.basename(single.file), '--out', out, '--json'], {
      env: { DATABASE_URL: database.url, LMS_BACKUP_DIR: dir, LMS_BACKUP_KEY_FILE: keyFile },
      cwd: work,
    });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ out, archive: 'custom', manifestChecked: true });
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    await restoresAsTheManifestSays(out, single.file);

    const outFolder = path.join(work, 'plain.dump.d');
    await expect(backupDecrypt(contextOf(), folder.file, { out: outFolder })).resolves.toMatchObject({
      archive: 'directory',
    });
    expect((await stat(outFolder)).mode & 0o777).toBe(0o700);
    await restoresAsTheManifestSays(outFolder, folder.file);
    await expect(backupDecrypt(contextOf(), folder.file, { out: outFolder })).rejects.toMatchObject({ exitCode: 2 });
  });

  it('writes nothing on a wrong key, a damaged file or an unencrypted backup', async () => {
    const otherKey = path.join(work, 'other.key');
    await writeFile(otherKey, generateBackupKeyHex());
    const out = path.join(work, 'never.dump');
    await expect(
      backupDecrypt(contextOf({ LMS_BACKUP_KEY_FILE: otherKey }), single.file, { out }),
    ).rejects.toMatchObject({ exitCode: 3, message: expect.stringContaining('another key') });

    const damagedDir = path.join(work, 'damaged');
    await mkdir(damagedDir);
    const damaged = await backup(contextOf({ LMS_BACKUP_DIR: damagedDir }), { encrypt: true });
    const bytes = await readFile(damaged.file);
    bytes[bytes.length - 40]! ^= 0x01;
    await writeFile(damaged.file, bytes);
    // The manifest's checksum would catch it too: without the manifest, the tag alone does.
    await rm(manifestPathOf(damaged.file));
    await expect(backupDecrypt(contextOf({ LMS_BACKUP_DIR: damagedDir }), damaged.file, { out })).rejects.toMatchObject(
      { exitCode: 3, message: expect.stringContaining('failed authentication') },
    );

    const plainDir = path.join(work, 'unencrypted');
    await mkdir(plainDir);
    const plain = await backup(contextOf({ LMS_BACKUP_DIR: plainDir }));
    await expect(backupDecrypt(contextOf({ LMS_BACKUP_DIR: plainDir }), plain.file, { out })).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('is not encrypted'),
    });
    expect((await readdir(work)).filter((name) => name.startsWith('never'))).toEqual([]);
  });
});

describe.each([
  ['python', (script: string) => ['python3', [script]] as const],
  ['node', (script: string) => [process.execPath, [script]] as const],
] as const)('the %s decryptor of docs/backups.md', (kind, command) => {
  const run = (source: string, out: string, key = keyFile) => {
    const [file, args] = command(decryptors[kind]);
    return execa(file, [...args, key, source, out], { reject: false });
  };

  it('decrypts a real encrypted backup, single file and folder, which pg_restore restores to the manifest counts', async () => {
    const out = path.join(work, `${kind}.dump`);
    const single_ = await run(single.file, out);
    expect(single_.exitCode, single_.stderr).toBe(0);
    await restoresAsTheManifestSays(out, single.file);
    const outFolder = path.join(work, `${kind}.dump.d`);
    const folder_ = await run(folder.file, outFolder);
    expect(folder_.exitCode, folder_.stderr).toBe(0);
    await restoresAsTheManifestSays(outFolder, folder.file);
  });

  it('refuses a wrong key and a file cut at a chunk boundary, leaving no output', async () => {
    const otherKey = path.join(work, `${kind}-other.key`);
    await writeFile(otherKey, generateBackupKeyHex());
    await chmod(otherKey, 0o600);
    const wrong = await run(single.file, path.join(work, `${kind}-wrong.dump`), otherKey);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain('another key');

    // Header and one full chunk (1 MiB + tag): a file that ends where a chunk ends, the hard case.
    const cut = path.join(work, `${kind}-cut.bin`);
    await writeFile(cut, (await readFile(single.file)).subarray(0, 53 + 1024 * 1024 + 16));
    expect((await stat(single.file)).size).toBeGreaterThan((await stat(cut)).size);
    const cutRun = await run(cut, path.join(work, `${kind}-cut.dump`));
    expect(cutRun.exitCode).not.toBe(0);
    expect(cutRun.stderr).toContain('failed authentication');
    expect(
      (await readdir(work)).filter((name) => name.startsWith(`${kind}-wrong`) || name.startsWith(`${kind}-cut.dump`)),
    ).toEqual([]);
    await truncate(cut, 20);
    expect((await run(cut, path.join(work, `${kind}-short.dump`))).exitCode).not.toBe(0);
  });
});
