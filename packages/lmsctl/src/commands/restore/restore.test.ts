import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, queueNames, redisConnectionOptions, withDatabase } from '@lms/core';
import { createTestDatabase, listDatabases, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { verificationPathOf } from '../../backup/archive/store.js';
import { manifestPathOf, signManifest, type BackupManifest } from '../../backup/archive/manifest.js';
import {
  dropDatabasesOf,
  projectMigrations,
  publicTableCount,
  seedLmsDatabase,
} from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import {
  createRichFixture,
  describeSchema,
  fingerprintTables,
  nextSequenceValues,
} from '../../testing/rich-fixture.js';
import { runLmsctl, spawnLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import { restore, type RestoreResult } from './restore.js';
import { type RestorePlan } from '../../backup/restore-plan.js';
import { restoreCleanup } from './cleanup.js';

let work: string;
let keyFile: string;
const queuePrefix = testRedisPrefix('restore');
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-restore-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

/** A seeded database and a backup folder of its own; everything is dropped after the file. */
async function scenario(label: string, seed: (url: string) => Promise<void> = (url) => seedLmsDatabase(url)) {
  const database = await createTestDatabase(label);
  cleanups.push(() => dropDatabasesOf(database));
  await seed(database.url);
  const dir = path.join(work, label);
  await mkdir(dir, { recursive: true });
  const env = {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: dir,
    LMS_DRILL_DIR: path.join(dir, 'drills'),
    LMS_BACKUP_KEY_FILE: keyFile,
    // The queues a restore pauses are this test's own, on the test Redis (TEST_REDIS_URL).
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: queuePrefix,
  };
  const context = (yes = true, extra: Record<string, string> = {}) =>
    testContext({ cwd: work, yes, env: { ...env, ...extra } }).ctx;
  return { database, dir, env, context };
}

async function databasesLike(database: TestDatabase): Promise<string[]> {
  return (await listDatabases(database.name)).filter((name) => name !== database.name);
}

async function execSql(url: string, sql: string, params: unknown[] = []): Promise<void> {
  const client = await connectClient(url);
  try {
    await client.query(sql, params);
  } finally {
    await client.end();
  }
}

describe('restore round trip', () => {
  it('brings back every table, type, object and sequence of a rich database exactly', async () => {
    const { database, context } = await scenario('rt_rich', (url) => createRichFixture(url));
    const fingerprints = await fingerprintTables(database.url);
    const schema = await describeSchema(database.url);
    const sequences = await nextSequenceValues(database.url);
    await backup(context());

    // Change everything after the backup: the restore must undo it.
    await execSql(database.url, 'DROP SCHEMA shop CASCADE');
    const result = (await restore(context(), 'latest', { dropPrevious: true })) as RestoreResult;
    expect(result.plan).toBe(false);
    expect(result.tables).toBe(Object.keys(fingerprints).length);

    expect(await fingerprintTables(database.url)).toEqual(fingerprints);
    expect(await describeSchema(database.url)).toEqual(schema);
    expect(await nextSequenceValues(database.url)).toEqual(sequences);
    // The next insert continues the sequence instead of colliding.
    const client = await connectClient(database.url);
    try {
      const { rows } = await client.query<{ value: string }>(`SELECT nextval('shop.invoice_number_seq') AS value`);
      expect(Number(rows[0]!.value)).toBe(sequences['shop.invoice_number_seq']);
    } finally {
      await client.end();
    }
    expect(await databasesLike(database)).toEqual([]);
  });

  it('restores an encrypted backup and keeps the previous database until cleanup', async () => {
    const { database, context } = await scenario('rt_encrypted');
    const before = await fingerprintTables(database.url);
    await backup(context(), { encrypt: true });
    await execSql(database.url, 'DELETE FROM enrollments');
    const result = (await restore(context(), 'latest')) as RestoreResult;
    expect(await fingerprintTables(database.url)).toEqual(before);
    expect(result.previous).toMatch(new RegExp(`^${database.name}_pre_restore_\\d{14}$`));
    expect(await databasesLike(database)).toEqual([result.previous]);
    // The kept database holds the state from before the restore.
    expect((await fingerprintTables(withDatabase(database.url, result.previous!)))['public.enrollments']!.rows).toBe(0);

    const refused = await restoreCleanup(context(false)).catch((e: unknown) => e);
    expect(refused).toMatchObject({ exitCode: 2 });
    const cleaned = await restoreCleanup(context());
    expect(cleaned.dropped.map((entry) => entry.database)).toContain(result.previous);
    expect(await databasesLike(database)).toEqual([]);
  });

  it('--target-database-url restores into another, new database and leaves the source alone', async () => {
    const { database, context } = await scenario('rt_target');
    const before = await fingerprintTables(database.url);
    await backup(context());
    const stagingUrl = withDatabase(database.url, `${database.name}_staging`);
    const result = (await restore(context(), 'latest', {
      targetDatabaseUrl: stagingUrl,
      fromDatabase: database.name,
      create: true,
    })) as RestoreResult;
    expect(result.previous).toBeNull();
    // The application's queues keep running: its database is not the one replaced.
    expect(result.queuesPaused).toEqual([]);
    expect(await fingerprintTables(stagingUrl)).toEqual(before);
    expect(await fingerprintTables(database.url)).toEqual(before);
  });
});

describe('restore refuses and leaves the target intact', () => {
  it('without --yes and no terminal: exit 2, names the target, nothing changed', async () => {
    const { database, env } = await scenario('no_tty');
    await backup(testContext({ cwd: work, env }).ctx);
    await execSql(database.url, `DELETE FROM enrollments`);
    const before = await fingerprintTables(database.url);
    const run = await runLmsctl(['restore', 'latest'], { env, cwd: work });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain(`over database ${database.name} on 127.0.0.1:5432`);
    expect(run.stderr).toContain('error: refusing to replace database');
    expect(await fingerprintTables(database.url)).toEqual(before);
    expect(await databasesLike(database)).toEqual([]);
  });

  it('with other sessions: refuses listing them, or disconnects them with --force-disconnect', async () => {
    const { database, context } = await scenario('sessions');
    await backup(context());
    const app = await connectClient(database.url, { applicationName: 'lms-api' });
    const other = await connectClient(database.url, { applicationName: 'lms-api' });
    try {
      const refused = await restore(context(), 'latest').catch((e: unknown) => e);
      expect(refused).toMatchObject({
        exitCode: 1,
        message: expect.stringContaining('has 2 other session(s): lms-api ×2'),
      });
      expect(await databasesLike(database)).toEqual([]);

      const result = (await restore(context(), 'latest', {
        forceDisconnect: true,
        dropPrevious: true,
      })) as RestoreResult;
      expect(result.disconnected).toBe(2);
      await expect(app.query('SELECT 1')).rejects.toThrow();
    } finally {
      await app.end().catch(() => undefined);
      await other.end().catch(() => undefined);
    }
  });

  it('exits 3 before touching anything for a flipped byte, a truncated dump, a wrong key, a tampered or re-signed manifest', async () => {
    const { database, dir, context, env } = await scenario('corrupt');
    const made = await backup(context(), { encrypt: true });
    const plain = await backup(context());
    await execSql(database.url, `DELETE FROM enrollments`);
    const before = await fingerprintTables(database.url);
    const original = await readFile(made.file);
    const originalPlain = await readFile(plain.file);

    const attempts: Array<[string, () => Promise<void>, Record<string, string>, string]> = [
      [
        'flipped byte',
        async () => {
          const bytes = Buffer.from(originalPlain);
          bytes[bytes.length - 200]! ^= 0x01;
          await writeFile(plain.file, bytes);
        },
        {},
        path.basename(plain.file),
      ],
      [
        'truncated',
        () => writeFile(plain.file, originalPlain.subarray(0, originalPlain.length / 2)),
        {},
        path.basename(plain.file),
      ],
      [
        'wrong key',
        async () => writeFile(path.join(work, 'wrong.key'), generateBackupKeyHex()),
        { LMS_BACKUP_KEY_FILE: path.join(work, 'wrong.key') },
        path.basename(made.file),
      ],
      [
        'tampered manifest',
        async () => {
          const manifest = JSON.parse(await readFile(manifestPathOf(plain.file), 'utf8')) as BackupManifest;
          manifest.tables!['public.users'] = 1;
          await writeFile(manifestPathOf(plain.file), JSON.stringify(manifest));
        },
        {},
        path.basename(plain.file),
      ],
      [
        'encrypted backup re-signed without its key',
        async () => {
          const manifest = JSON.parse(await readFile(manifestPathOf(made.file), 'utf8')) as BackupManifest;
          const { signature: _signature, ...body } = manifest;
          await writeFile(manifestPathOf(made.file), JSON.stringify(signManifest(body)));
        },
        {},
        path.basename(made.file),
      ],
    ];
    for (const [what, damage, extraEnv, file] of attempts) {
      await writeFile(plain.file, originalPlain);
      await writeFile(made.file, original);
      await damage();
      const run = await runLmsctl(['restore', file, '--yes'], { env: { ...env, ...extraEnv }, cwd: work });
      expect(run.exitCode, `${what}: ${run.stderr}`).toBe(3);
      expect(await fingerprintTables(database.url), what).toEqual(before);
      expect(await databasesLike(database), what).toEqual([]);
      // Recorded beside the dump, so `backup list` and `migrate --require-backup` stop trusting it;
      // a wrong key says nothing about the backup, which keeps its earlier good verification.
      const verification = JSON.parse(await readFile(verificationPathOf(path.join(dir, file)), 'utf8')) as {
        ok: boolean;
      };
      expect(verification.ok, what).toBe(what === 'wrong key');
    }
  });

  it('exits 3 when the restored rows differ from the manifest, drops what it built, and resumes the queues', async () => {
    const { database, context } = await scenario('count_mismatch');
    const made = await backup(context());
    // A manifest that promises one row more than the dump holds, correctly re-signed.
    const manifest = JSON.parse(await readFile(manifestPathOf(made.file), 'utf8')) as BackupManifest;
    const { signature: _signature, ...body } = manifest;
    const courses = body.tables!['public.courses']!;
    body.tables!['public.courses'] = courses + 1;
    await writeFile(manifestPathOf(made.file), JSON.stringify(signManifest(body)));
    const before = await fingerprintTables(database.url);

    const error = await restore(context(), 'latest').catch((e: unknown) => e);
    expect(error).toMatchObject({
      exitCode: 3,
      message: expect.stringContaining(`public.courses has ${courses} rows, expected ${courses + 1}`),
    });
    expect(await fingerprintTables(database.url)).toEqual(before);
    expect(await databasesLike(database)).toEqual([]);
    const queue = new Queue('progress', { connection: redisConnectionOptions(testRedisUrl), prefix: queuePrefix });
    try {
      expect(await queue.isPaused()).toBe(false);
    } finally {
      await queue.close();
    }
  });
});

describe('restore and the job queues', () => {
  it('pauses the queues for the duration and leaves an already paused queue paused', async () => {
    const { context } = await scenario('queues');
    await backup(context());
    const queues = queueNames.map(
      (name) => new Queue(name, { connection: redisConnectionOptions(testRedisUrl), prefix: queuePrefix }),
    );
    try {
      await queues[0]!.pause();
      const result = (await restore(context(), 'latest', { dropPrevious: true })) as RestoreResult;
      expect(result.queuesPaused).toEqual(queueNames.slice(1));
      expect(await Promise.all(queues.map((queue) => queue.isPaused()))).toEqual([true, false, false, false]);
    } finally {
      await queues[0]!.resume();
      await Promise.all(queues.map((queue) => queue.close()));
    }
  });

  it('refuses when an explicitly configured Redis does not answer, unless --no-pause-queues', async () => {
    const { database, context } = await scenario('redis_down');
    await backup(context());
    const down = { REDIS_URL: 'redis://127.0.0.1:1' };
    await expect(restore(context(true, down), 'latest')).rejects.toMatchObject({
      exitCode: 1,
      message: expect.stringContaining('cannot pause the job queues'),
    });
    expect(await databasesLike(database)).toEqual([]);
    await expect(
      restore(context(true, down), 'latest', { pauseQueues: false, dropPrevious: true }),
    ).resolves.toMatchObject({ plan: false });
  });
});

describe('restore --plan', () => {
  it('describes contents, sessions, disk and versions and changes nothing', async () => {
    const { database, context } = await scenario('plan');
    await backup(context());
    const app = await connectClient(database.url, { applicationName: 'lms-worker' });
    try {
      const plan = (await restore(context(false), 'latest', { plan: true })) as RestorePlan;
      expect(plan.plan).toBe(true);
      const tables = await publicTableCount(database.url);
      expect(plan.backup).toMatchObject({
        tables,
        migration: (await projectMigrations()).latest.version,
        encrypted: false,
      });
      expect(plan.archive.byType).toMatchObject({ TABLE: tables, 'TABLE DATA': tables });
      expect(plan.target).toMatchObject({ database: database.name, exists: true });
      expect(plan.sessions.map((session) => session.applicationName)).toEqual(['lms-worker']);
      expect(plan.disk.freeBytes).toBeGreaterThan(0);
      expect(plan.compatibility[0]).toMatch(/pg_restore \d+ reads archives of pg_dump/);
      expect(plan.steps.join('\n')).toContain('refuse: 1 session(s) connected');
      expect(await databasesLike(database)).toEqual([]);
    } finally {
      await app.end();
    }
  });
});

describe('restore interrupted', () => {
  /** A database big enough that pg_restore runs for a while. */
  const bulky = async (url: string) => {
    await seedLmsDatabase(url);
    await execSql(
      url,
      `INSERT INTO audit_log (action, entity_type, entity_id, details)
       SELECT 'bulk.insert', 'row', g::text, jsonb_build_object('n', g, 'pad', repeat('x', 200)) FROM generate_series(1, 300000) g`,
    );
    await execSql(url, 'CREATE INDEX audit_log_details_idx ON audit_log USING gin (details)');
  };

  async function waitForDatabase(database: TestDatabase, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    for (const started = Date.now(); Date.now() - started < timeoutMs;) {
      const found = (await databasesLike(database)).find((name) => pattern.test(name));
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no database matching ${pattern} appeared`);
  }

  it('SIGTERM mid-restore: exit 1, the half-built database removed, the target unchanged', async () => {
    const { database, context, env } = await scenario('sigterm', bulky);
    await backup(context());
    await execSql(database.url, `DELETE FROM enrollments`);
    const before = await fingerprintTables(database.url);
    const child = spawnLmsctl(['restore', 'latest', '--yes', '--jobs', '1'], { env, cwd: work });
    await waitForDatabase(database, /_restoring_/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    const run = await child;
    expect(run.exitCode, String(run.stderr)).toBe(1);
    expect(String(run.stderr)).toContain(`interrupted by SIGTERM: ${database.name} was not changed`);
    expect(await fingerprintTables(database.url)).toEqual(before);
    expect(await databasesLike(database)).toEqual([]);
  });

  it('SIGKILL of lmsctl and its pg_restore: the target unchanged, the leftover removed by the next run', async () => {
    const { database, context, env } = await scenario('sigkill', bulky);
    await backup(context());
    await execSql(database.url, `DELETE FROM enrollments`);
    const before = await fingerprintTables(database.url);
    const child = spawnLmsctl(['restore', 'latest', '--yes', '--jobs', '1'], { env, cwd: work });
    const building = await waitForDatabase(database, /_restoring_/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(-child.pid!, 'SIGKILL');
    await child;
    expect(await fingerprintTables(database.url)).toEqual(before);
    // The server notices the dead connections; the half-built database stays until the next run.
    const admin = await connectClient(withDatabase(database.url, 'postgres'));
    try {
      for (let waited = 0; waited < 10_000; waited += 100) {
        const { rows } = await admin.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
          [building],
        );
        if (rows[0]!.n === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      await admin.end();
    }
    expect(await databasesLike(database)).toEqual([building]);
    // A restore of another database leaves it alone: that restore was not confirmed for this one.
    const bystander = await scenario('bystander');
    await backup(bystander.context());
    await restore(bystander.context(), 'latest');
    expect(await databasesLike(database)).toEqual([building]);
    const cleaned = await restoreCleanup(context());
    expect(cleaned.dropped).toEqual([expect.objectContaining({ database: building, kind: 'restore-in-progress' })]);
    expect(await databasesLike(database)).toEqual([]);
  });
});
