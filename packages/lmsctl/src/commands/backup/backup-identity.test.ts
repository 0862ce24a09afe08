import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, listDatabases, type TestDatabase } from '@lms/core/testing';
import { manifestPathOf, signManifest, type BackupManifest } from '../../backup/archive/manifest.js';
import { seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { fingerprintTables } from '../../testing/rich-fixture.js';
import { execa } from 'execa';
import { cliEntry, runLmsctl, tsxLoader } from '../../testing/run-cli.js';
import { backupList } from './list.js';
import { backupPrune } from '../../backup/retention.js';
import { backupVerify } from './verify.js';
import { backup } from '../../backup/create.js';
import { drill } from '../../backup/drill.js';
import { restore, type RestoreResult } from '../restore/restore.js';
import type { StatusResult } from '../status.js';
import { restoreCleanup } from '../restore/cleanup.js';

/**
 * Two databases backing up into one folder (the default `backups/db` on a shared host): every
 * command that takes "the newest backup" must take the addressed database's, and a restore must
 * never put one database's backup over the other without the user naming the source.
 */

let work: string;
let folder: string;
let alpha: TestDatabase;
let beta: TestDatabase;
const created: string[] = [];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-identity-'));
  folder = path.join(work, 'backups');
  alpha = await createTestDatabase('ident_alpha');
  beta = await createTestDatabase('ident_beta');
  await seedLmsDatabase(alpha.url, { users: 30 });
  await seedLmsDatabase(beta.url, { users: 70 });
});

afterAll(async () => {
  const admin = await connectClient(withDatabase(alpha.url, 'postgres'));
  try {
    const mine = [
      ...(await listDatabases(alpha.name)),
      ...(await listDatabases(beta.name)),
      ...(await Promise.all(created.map((name) => listDatabases(name)))).flat(),
    ];
    for (const name of mine) await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  await rm(work, { recursive: true, force: true });
});

function envOf(database: TestDatabase, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: folder,
    LMS_DRILL_DIR: path.join(work, 'drills'),
    ...extra,
  };
}

const contextOf = (database: TestDatabase, yes = true) => testContext({ cwd: work, yes, env: envOf(database) }).ctx;

async function execSql(url: string, sql: string): Promise<void> {
  const client = await connectClient(url);
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

describe('two databases, one backup folder', () => {
  let alphaBackup: string;
  let betaBackup: string;

  beforeAll(async () => {
    alphaBackup = (await backup(contextOf(alpha))).file;
    // Beta's is the newest in the folder: the one a folder-wide "latest" would wrongly pick for alpha.
    betaBackup = (await backup(contextOf(beta))).file;
  });

  it('records the source identity in the manifest', async () => {
    const manifest = JSON.parse(await readFile(manifestPathOf(alphaBackup), 'utf8')) as BackupManifest;
    const client = await connectClient(alpha.url);
    try {
      const { rows } = await client.query<{ oid: number; id: string }>(
        `SELECT d.oid, (SELECT system_identifier::text FROM pg_control_system()) AS id
           FROM pg_database d WHERE d.datname = current_database()`,
      );
      expect(manifest.database).toMatchObject({
        name: alpha.name,
        host: '127.0.0.1',
        port: 5432,
        oid: rows[0]!.oid,
        systemIdentifier: rows[0]!.id,
      });
    } finally {
      await client.end();
    }
  });

  it('restore latest --yes addressed at each database restores its own backup', async () => {
    for (const database of [alpha, beta]) {
      const before = await fingerprintTables(database.url);
      await execSql(database.url, 'DELETE FROM enrollments');
      const result = (await restore(contextOf(database), 'latest', { dropPrevious: true })) as RestoreResult;
      expect(result.backup).toBe(database === alpha ? alphaBackup : betaBackup);
      expect(await fingerprintTables(database.url)).toEqual(before);
    }
  });

  it("refuses another database's backup (exit 2, naming both) unless --from-database repeats the source", async () => {
    const before = await fingerprintTables(beta.url);
    const refused = await runLmsctl(['restore', path.basename(alphaBackup), '--yes'], { env: envOf(beta), cwd: work });
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`is a backup of ${alpha.name} on 127.0.0.1:5432`);
    expect(refused.stderr).toContain(`not of the target ${beta.name} on 127.0.0.1:5432`);
    expect(refused.stderr).toContain(`--from-database ${alpha.name}`);

    const wrongName = await runLmsctl(['restore', path.basename(alphaBackup), '--yes', '--from-database', beta.name], {
      env: envOf(beta),
      cwd: work,
    });
    expect(wrongName.exitCode, wrongName.stderr).toBe(2);
    expect(wrongName.stderr).toContain(`--from-database ${beta.name} does not match`);
    expect(await fingerprintTables(beta.url)).toEqual(before);
    expect((await listDatabases(beta.name)).filter((name) => name !== beta.name)).toEqual([]);

    // Named, it goes through: beta now holds alpha's rows.
    const alphaRows = await fingerprintTables(alpha.url);
    const copy = (await restore(contextOf(beta), 'latest', {
      fromDatabase: alpha.name,
      dropPrevious: true,
    })) as RestoreResult;
    expect(copy.backup).toBe(alphaBackup);
    expect(await fingerprintTables(beta.url)).toEqual(alphaRows);
    // Put beta back as it was, from its own backup.
    await restore(contextOf(beta), betaBackup, { dropPrevious: true });
    expect(await fingerprintTables(beta.url)).toEqual(before);
  });

  it('refuses a backup of the same name from another server (its system identifier differs)', async () => {
    const foreign = path.join(folder, 'lms_20200101_000000.dump');
    await copyFile(alphaBackup, foreign);
    const manifest = JSON.parse(await readFile(manifestPathOf(alphaBackup), 'utf8')) as BackupManifest;
    const { signature: _signature, ...body } = manifest;
    body.file = path.basename(foreign);
    body.database = { ...body.database, host: 'db-old.example', systemIdentifier: '1234567890123456789' };
    await writeFile(manifestPathOf(foreign), JSON.stringify(signManifest(body)));
    try {
      const refused = await runLmsctl(['restore', path.basename(foreign), '--yes', '--plan'], {
        env: envOf(alpha),
        cwd: work,
      });
      expect(refused.exitCode, refused.stderr).toBe(2);
      expect(refused.stderr).toContain('the same name on another server');
      const named = await runLmsctl(['restore', path.basename(foreign), '--plan', '--from-database', alpha.name], {
        env: envOf(alpha),
        cwd: work,
      });
      expect(named.exitCode, named.stderr).toBe(0);
    } finally {
      await rm(foreign);
      await rm(manifestPathOf(foreign));
      await rm(`${foreign}.verify.json`, { force: true });
    }
  });

  it('refuses to restore into a database that does not exist unless --create', async () => {
    const missing = `${alpha.name}_typo`;
    created.push(missing);
    const url = withDatabase(alpha.url, missing);
    const refused = await runLmsctl(['restore', 'latest', '--yes', '--from-database', alpha.name], {
      env: envOf(alpha, { DATABASE_URL: url }),
      cwd: work,
    });
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`database ${missing} does not exist`);
    expect(refused.stderr).toContain('--create');
    expect(await listDatabases(missing)).toEqual([]);
    const made = (await restore(
      testContext({ cwd: work, yes: true, env: envOf(alpha, { DATABASE_URL: url }) }).ctx,
      'latest',
      {
        fromDatabase: alpha.name,
        create: true,
      },
    )) as RestoreResult;
    expect(made.backup).toBe(alphaBackup);
    expect(await fingerprintTables(url)).toEqual(await fingerprintTables(alpha.url));
  });

  it('backup list shows the addressed database, --database another, --all every one', async () => {
    const own = await backupList(contextOf(alpha));
    expect(own.backups.map((info) => info.path)).toEqual([alphaBackup]);
    expect(own.hidden).toBeGreaterThanOrEqual(1);
    const other = await backupList(contextOf(alpha), { database: beta.name });
    expect(other.backups.map((info) => info.path)).toEqual([betaBackup]);
    const all = await backupList(contextOf(alpha), { all: true });
    expect(all.backups.map((info) => info.path)).toEqual(expect.arrayContaining([alphaBackup, betaBackup]));
    const run = await runLmsctl(['backup', 'list'], { env: envOf(beta), cwd: work });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain(path.basename(betaBackup));
    expect(run.stdout).not.toContain(path.basename(alphaBackup));
    expect(run.stdout).toContain(`${beta.name}@127.0.0.1:5432`);
    expect(run.stdout).toContain('--all lists them');
  });

  it('verify latest takes the addressed database; without one and with several databases it asks which', async () => {
    expect((await backupVerify(contextOf(alpha), 'latest')).file).toBe(alphaBackup);
    expect((await backupVerify(contextOf(alpha), 'latest', { database: beta.name })).file).toBe(betaBackup);
    const unaddressed = testContext({ cwd: work, env: { LMS_BACKUP_DIR: folder } }).ctx;
    await expect(backupVerify(unaddressed, 'latest')).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('holds backups of several databases'),
    });
  });

  it('status and check daily report the newest backup of the addressed database', async () => {
    for (const [database, newest] of [
      [alpha, alphaBackup],
      [beta, betaBackup],
    ] as const) {
      const status = await runLmsctl(['status', '--json', '--api-url', 'http://127.0.0.1:1'], {
        env: envOf(database),
        cwd: work,
      });
      const item = (JSON.parse(status.stdout) as StatusResult).items.find((entry) => entry.name === 'backup');
      expect(item?.data).toMatchObject({ file: path.basename(newest), database: database.name });
      const daily = await runLmsctl(['check', 'daily', '--json', '--api-url', 'http://127.0.0.1:1'], {
        env: envOf(database),
        cwd: work,
      });
      const dailyItem = (JSON.parse(daily.stdout) as StatusResult).items.find((entry) => entry.name === 'backup');
      expect(dailyItem?.data).toMatchObject({ file: path.basename(newest) });
    }
  });

  it("drill drills the addressed database's newest backup; a one-off --backup FILE leaves the metrics alone", async () => {
    const metrics = path.join(work, 'metrics');
    await mkdir(metrics, { recursive: true });
    const ctx = testContext({ cwd: work, yes: true, env: envOf(alpha, { LMS_METRICS_TEXTFILE_DIR: metrics }) }).ctx;
    const routine = await drill(ctx);
    expect(routine.report.verdict).toBe('pass');
    expect(routine.report.backup.file).toBe(path.basename(alphaBackup));
    expect(routine.report.backup.source).toMatchObject({ name: alpha.name });
    const published = await readFile(path.join(metrics, 'lms_drill.prom'), 'utf8');
    expect(published).toContain(`lms_drill_last_status{database="${alpha.name}"} 1`);

    // A one-off drill of a named file (here one whose manifest names another file, so it fails
    // before any scratch database exists) must not turn the scheduled drill's status to 0.
    const broken = path.join(work, 'lms_20200101_000000.dump');
    await copyFile(betaBackup, broken);
    await copyFile(manifestPathOf(betaBackup), manifestPathOf(broken));
    const oneOff = await drill(ctx, { backup: broken });
    expect(oneOff.report.verdict).toBe('fail');
    expect(oneOff.report.routine).toBe(false);
    expect(oneOff.report.scratch.created).toBe(false);
    expect(await readFile(path.join(metrics, 'lms_drill.prom'), 'utf8')).toBe(published);
    // A verification failure is recorded beside a backup (named as lmsctl names them), never
    // beside an arbitrary file.
    const arbitrary = path.join(work, 'copy-of-backup.dump');
    await copyFile(betaBackup, arbitrary);
    await copyFile(manifestPathOf(betaBackup), manifestPathOf(arbitrary));
    await expect(backupVerify(contextOf(beta), arbitrary)).rejects.toMatchObject({ exitCode: 3 });
    expect((await readdir(work)).filter((name) => name.startsWith('copy-of-backup'))).toEqual([
      'copy-of-backup.dump',
      'copy-of-backup.dump.json',
    ]);
  });

  it('backup list shows a failed verification as failed, with its reason', async () => {
    const damaged = path.join(folder, 'lms_20200102_000000.dump');
    await copyFile(betaBackup, damaged);
    const manifest = JSON.parse(await readFile(manifestPathOf(betaBackup), 'utf8')) as BackupManifest;
    const { signature: _signature, ...body } = manifest;
    await writeFile(manifestPathOf(damaged), JSON.stringify(signManifest({ ...body, file: path.basename(damaged) })));
    const bytes = await readFile(damaged);
    bytes[bytes.length - 100]! ^= 0x01;
    await writeFile(damaged, bytes);
    try {
      await expect(backupVerify(contextOf(beta), damaged)).rejects.toMatchObject({ exitCode: 3 });
      const listed = (await backupList(contextOf(beta))).backups.find((info) => info.path === damaged);
      expect(listed).toMatchObject({ verification: 'failed', verificationDetail: expect.stringContaining('sha256') });
      const run = await runLmsctl(['backup', 'list'], { env: envOf(beta), cwd: work });
      expect(run.stdout).toContain('FAILED');
      expect(run.stdout).toMatch(/verification failed lms_20200102_000000\.dump .*sha256/);
    } finally {
      for (const file of [damaged, manifestPathOf(damaged), `${damaged}.verify.json`]) await rm(file, { force: true });
    }
  });

  it("prune keeps each database's own newest backups", async () => {
    const second = (await backup(contextOf(alpha))).file;
    const dry = await backupPrune(contextOf(alpha), { keep: 1, dryRun: true });
    // Alpha's own: the newest, and the older one because it passed the drill above; beta's
    // backup, newer than alpha's first, is neither counted against alpha's --keep nor touched.
    expect(dry.kept).toEqual([
      expect.objectContaining({ file: path.basename(second), reason: 'newest backup' }),
      expect.objectContaining({ file: path.basename(alphaBackup), reason: 'newest backup that passed a drill' }),
    ]);
    expect(dry.deleted).toEqual([]);
    const everyone = await backupPrune(contextOf(alpha), { keep: 1, dryRun: true, all: true });
    expect(everyone.kept.map((entry) => entry.file)).toEqual(
      expect.arrayContaining([path.basename(second), path.basename(betaBackup)]),
    );
    await rm(second);
    await rm(manifestPathOf(second));
    await rm(`${second}.verify.json`, { force: true });
  });

  it("restore cleanup drops the addressed database's kept copy and leaves the other's alone", async () => {
    const keptAlpha = ((await restore(contextOf(alpha), 'latest')) as RestoreResult).previous!;
    const keptBeta = ((await restore(contextOf(beta), 'latest')) as RestoreResult).previous!;
    const cleaned = await restoreCleanup(contextOf(alpha));
    expect(cleaned.dropped.map((entry) => entry.database)).toEqual([keptAlpha]);
    expect(cleaned.leftAlone).toContain(keptBeta);
    expect(await listDatabases(keptBeta)).toEqual([keptBeta]);
    const rest = await restoreCleanup(contextOf(beta));
    expect(rest.dropped.map((entry) => entry.database)).toEqual([keptBeta]);
  });

  it('asks for a production-looking target to be confirmed by typing its name, naming source and target', async () => {
    const production = `lmsidentprod_${process.pid}`;
    created.push(production);
    const url = withDatabase(alpha.url, production);
    const env = envOf(alpha, { DATABASE_URL: url });
    await restore(testContext({ cwd: work, yes: true, env }).ctx, 'latest', { fromDatabase: alpha.name, create: true });
    await execSql(url, 'DELETE FROM enrollments');
    const before = await fingerprintTables(url);

    // A real terminal (script(1) gives lmsctl a pty): the prompt, then what the user types.
    const answer = async (typed: string) => {
      const quote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;
      const command = [process.execPath, '--conditions=lms-source', '--import', tsxLoader, cliEntry]
        .concat(['restore', 'latest', '--from-database', alpha.name])
        .map(quote)
        .join(' ');
      const child = execa('script', ['-qec', command, '/dev/null'], {
        reject: false,
        extendEnv: false,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...env },
        cwd: work,
        stdin: 'pipe',
      });
      let screen = '';
      let typedIn = false;
      child.stdout.on('data', (chunk: Buffer) => {
        screen += chunk.toString();
        if (!typedIn && screen.includes('to confirm:')) {
          typedIn = true;
          child.stdin.write(`${typed}\r`);
        }
      });
      const run = await child;
      return { exitCode: run.exitCode, screen };
    };

    const wrong = await answer('y');
    expect(wrong.exitCode, wrong.screen).toBe(2);
    expect(wrong.screen).toContain(`backup ${path.basename(alphaBackup)} of database ${alpha.name} on 127.0.0.1:5432`);
    expect(wrong.screen).toMatch(/\d+ rows/);
    expect(wrong.screen).toContain(`over database ${production}`);
    expect(wrong.screen).toContain(`Type the database name (${production}) to confirm`);
    expect(await fingerprintTables(url)).toEqual(before);

    const right = await answer(production);
    expect(right.exitCode, right.screen).toBe(0);
    expect(await fingerprintTables(url)).toEqual(await fingerprintTables(alpha.url));
  });
});
