import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { TarArchive } from 'archiver';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, listDatabases, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf } from '../../backup/archive/manifest.js';
import { seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { fingerprintTables } from '../../testing/rich-fixture.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { restore, type RestoreResult } from '../restore/restore.js';
import { backupBundle } from './bundle.js';

/**
 * `restore` and `drill` of an off-site bundle as it is: members checked, the backup unpacked into
 * LMS_WORK_DIR and verified like any other, the unpacked copy removed afterwards.
 */
let database: TestDatabase;
let work: string;
let keyFile: string;
const targets: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase('bundle_restore');
  await seedLmsDatabase(database.url, { users: 50 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-bundle-restore-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
});

afterAll(async () => {
  const admin = await connectClient(withDatabase(database.url, 'postgres'));
  try {
    const mine = [
      ...(await listDatabases(database.name)),
      ...(await Promise.all(targets.map((name) => listDatabases(name)))).flat(),
    ];
    for (const name of mine) await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  await rm(work, { recursive: true, force: true });
});

function envOf(dir: string, extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: dir,
    LMS_DRILL_DIR: path.join(work, 'drills'),
    LMS_BACKUP_KEY_FILE: keyFile,
    LMS_WORK_DIR: path.join(work, 'scratch'),
    ...extra,
  };
}
const contextOf = (dir: string, extra: Record<string, string> = {}) =>
  testContext({ cwd: work, yes: true, env: envOf(dir, extra) }).ctx;

/** A backup of the test database and its bundle, in a folder of its own. */
async function bundled(name: string, options: { jobs?: number; encrypt?: boolean } = {}) {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const made = await backup(contextOf(dir), options);
  const out = path.join(work, `${name}.tar.gz`);
  await backupBundle(contextOf(dir), 'latest', { out });
  return { dir, made, out };
}

/** A tar.gz of the given members, as someone else's tool might have written it. */
async function tarGz(out: string, members: Array<{ name: string; content: Buffer | string }>): Promise<void> {
  const archive = new TarArchive({ gzip: true });
  for (const member of members) archive.append(member.content, { name: member.name });
  await Promise.all([archive.finalize(), pipeline(archive, createWriteStream(out))]);
}

describe('restore and drill of a bundle', () => {
  it('restores and drills a bundle of either kind as it is, and leaves no unpacked copy behind', async () => {
    const before = await fingerprintTables(database.url);
    const empty = path.join(work, 'elsewhere');
    await mkdir(empty);
    for (const [name, options] of [
      ['single', {}],
      ['parallel-encrypted', { jobs: 2, encrypt: true }],
    ] as const) {
      const { out, made } = await bundled(name, options);
      const target = `${database.name}_${name.replace('-', '_')}`;
      targets.push(target);
      // From a backup folder that does not hold the backup: the bundle is all there is.
      const restored = (await restore(contextOf(empty), out, {
        targetDatabaseUrl: withDatabase(database.url, target),
        create: true,
        fromDatabase: database.name,
        pauseQueues: false,
        jobs: 2,
      })) as RestoreResult;
      expect(restored.tables, name).toBeGreaterThan(0);
      expect(await fingerprintTables(withDatabase(database.url, target)), name).toEqual(before);
      const drilled = await drill(contextOf(empty), { backup: out, jobs: 2 });
      expect(drilled.report.verdict, name).toBe('pass');
      expect(drilled.report.backup).toMatchObject({ file: path.basename(made.file), bundle: out });
      expect(await readFile(drilled.markdownPath, 'utf8')).toContain(`unpacked from the bundle \`${out}\``);
      expect((await readdir(path.join(work, 'scratch'))).filter((entry) => entry.startsWith('.'))).toEqual([]);
      expect(await readdir(empty)).toEqual([]);
    }
  });

  it('refuses (exit 3) a bundle with a foreign member, without a manifest, cut short, or with a changed backup', async () => {
    const { dir, made, out } = await bundled('refused');
    const name = path.basename(made.file);
    const dump = await readFile(made.file);
    const manifest = await readFile(manifestPathOf(made.file));
    const env = envOf(dir);
    const restoreOf = (bundle: string) =>
      runLmsctl(['restore', bundle, '--yes', '--no-pause-queues', '--plan'], { env, cwd: work });

    const foreign = path.join(work, 'foreign.tar.gz');
    await tarGz(foreign, [
      { name, content: dump },
      { name: `${name}.json`, content: manifest },
      { name: 'run-me.sh', content: 'echo hi' },
    ]);
    const foreignRun = await restoreOf(foreign);
    expect(foreignRun.exitCode, foreignRun.stderr).toBe(3);
    expect(foreignRun.stderr).toContain('holds run-me.sh, which `lmsctl backup bundle` never writes');

    const bare = path.join(work, 'bare.tar.gz');
    await tarGz(bare, [{ name, content: dump }]);
    const bareRun = await restoreOf(bare);
    expect(bareRun.exitCode).toBe(3);
    expect(bareRun.stderr).toContain('without its manifest');

    const cut = path.join(work, 'cut.tar.gz');
    await writeFile(cut, await readFile(out));
    await truncate(cut, Math.floor((await stat(cut)).size / 2));
    const cutRun = await restoreOf(cut);
    expect(cutRun.exitCode, cutRun.stderr).toBe(3);

    const changed = path.join(work, 'changed.tar.gz');
    const flipped = Buffer.from(dump);
    flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
    await tarGz(changed, [
      { name, content: flipped },
      { name: `${name}.json`, content: manifest },
    ]);
    const changedRun = await restoreOf(changed);
    expect(changedRun.exitCode).toBe(3);
    expect(changedRun.stderr).toContain("does not match its manifest's sha256");
    // Nothing unpacked stays.
    expect((await readdir(path.join(work, 'scratch'))).filter((entry) => entry.startsWith('.'))).toEqual([]);
    // The bundle itself is an ordinary tar.gz for other tools too.
    expect((await execa('tar', ['-tzf', out])).stdout).toContain(name);
  });
});
