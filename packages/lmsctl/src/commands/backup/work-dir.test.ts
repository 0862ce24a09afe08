import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { dropDatabasesOf, fakePgBinDir, seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { restore } from '../restore/restore.js';
import { backupVerify } from './verify.js';

/**
 * LMS_WORK_DIR: the plaintext lmsctl works with — decrypted copies for pg_restore, an encrypted
 * parallel backup before it is encrypted — is written there, never in the backup folder an
 * off-site sync may copy.
 */
let database: TestDatabase;
let work: string;
let keyFile: string;
let bin: string;
let calls: string;

beforeAll(async () => {
  database = await createTestDatabase('backup_work_dir');
  await seedLmsDatabase(database.url, { users: 40 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-work-dir-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
  calls = path.join(work, 'calls.log');
  // The real tools, each call's arguments logged: where do the archives they read and write lie?
  const log = (tool: string) => `echo "${tool} $*" >> ${JSON.stringify(calls)}\nexec "$REAL" "$@"`;
  bin = await fakePgBinDir({ pg_dump: log('pg_dump'), pg_restore: log('pg_restore') });
});

afterAll(async () => {
  await dropDatabasesOf(database);
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

describe('LMS_WORK_DIR', () => {
  it('holds every plaintext working copy of encrypted backups; the backup folder never does', async () => {
    const dir = path.join(work, 'backups');
    const scratch = path.join(work, 'scratch');
    await mkdir(dir);
    const ctx = testContext({
      cwd: work,
      yes: true,
      env: {
        DATABASE_URL: database.url,
        LMS_BACKUP_DIR: dir,
        LMS_DRILL_DIR: path.join(work, 'drills'),
        LMS_BACKUP_KEY_FILE: keyFile,
        LMS_WORK_DIR: scratch,
        LMS_PG_BIN_DIR: bin,
      },
    }).ctx;
    await backup(ctx, { encrypt: true });
    await backup(ctx, { encrypt: true, jobs: 2 });
    for (const file of (await readdir(dir)).filter((name) => /\.dump(\.d)?$/.test(name))) {
      await backupVerify(ctx, file, { deep: true });
      await drill(ctx, { backup: file, jobs: 2 });
      await restore(ctx, file, { dropPrevious: true, pauseQueues: false, jobs: 2 });
    }
    const archives = (await readFile(calls, 'utf8'))
      .split('\n')
      .filter((line) => /^pg_(dump|restore) /.test(line))
      .map((line) => {
        // pg_dump names where it writes with --file (none: it writes to lmsctl's pipe);
        // pg_restore takes the archive it reads last (none: it reads lmsctl's pipe).
        if (line.startsWith('pg_dump')) return /--file=(\S+)/.exec(line)?.[1];
        const last = line.split(' ').at(-1)!;
        return last.startsWith('-') ? undefined : last;
      })
      .filter((archive): archive is string => archive !== undefined);
    // The encrypted parallel dump's plaintext, and every decrypted archive pg_restore read.
    expect(archives.filter((archive) => archive.startsWith(`${scratch}${path.sep}`)).length).toBeGreaterThanOrEqual(7);
    expect(archives.filter((archive) => !archive.startsWith(`${scratch}${path.sep}`))).toEqual([]);
    // And nothing is left in either.
    expect((await readdir(scratch)).filter((name) => name.endsWith('.partial'))).toEqual([]);
    expect((await readdir(dir)).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});
