import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestEnv, testServerUrl, type TestEnv } from '@lms/core/testing';
import { backup } from '../../backup/create.js';
import { CliError } from '../../errors.js';
import { holdDatabaseLock, lockHolders } from '../../postgres/database-lock.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { restore } from '../restore/restore.js';
import { maintain, type MaintainResult } from './maintain.js';

let env: TestEnv;
let work: string;
let db: pg.Client;

/** The bloated table's counters and the file nodes of its indexes, as PostgreSQL has them now. */
async function facts(): Promise<{ dead: number; vacuumed: boolean; body: number; pkey: number }> {
  const { rows } = await db.query<{ dead: string; vacuumed: boolean; body: number; pkey: number }>(
    `SELECT n_dead_tup AS dead, last_vacuum IS NOT NULL AS vacuumed,
            (SELECT relfilenode FROM pg_class WHERE relname = 'bloated_body') AS body,
            (SELECT relfilenode FROM pg_class WHERE relname = 'bloated_pkey') AS pkey
       FROM pg_stat_user_tables WHERE relname = 'bloated'`,
  );
  const row = rows[0]!;
  return { dead: Number(row.dead), vacuumed: row.vacuumed, body: row.body, pkey: row.pkey };
}

function contextFor(extra: { yes?: boolean } = {}) {
  return testContext({ cwd: work, yes: extra.yes, env: env.vars({ LMS_BACKUP_DIR: path.join(work, 'backups') }) });
}

const statementsOf = (result: MaintainResult) => result.actions.map((action) => `${action.kind} ${action.relation}`);

beforeAll(async () => {
  env = await createTestEnv('db_maintain');
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-maintain-'));
  db = await connectClient(env.database.url, { applicationName: 'lms-tests' });
  // Bloat for real: 200,000 rows (about 15 MiB, its text index as much), nine in ten deleted,
  // and autovacuum kept off this table so nothing but the command under test cleans it.
  await db.query(`CREATE TABLE bloated (id bigint PRIMARY KEY, body text NOT NULL) WITH (autovacuum_enabled = false);
                  CREATE INDEX bloated_body ON bloated (body);
                  INSERT INTO bloated SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
                  DELETE FROM bloated WHERE id % 10 <> 0;
                  ANALYZE bloated;`);
  // A backend reports its table statistics at most once a second: ask for it, then wait for them.
  await db.query('SELECT pg_stat_force_next_flush()');
  const deadline = Date.now() + 15_000;
  while ((await facts()).dead <= 100_000) {
    if (Date.now() > deadline) throw new Error('the deleted rows never showed as dead tuples in pg_stat_user_tables');
    await db.query('SELECT pg_stat_clear_snapshot()');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
});

afterAll(async () => {
  await db?.end();
  await env?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('lmsctl db maintain', () => {
  it('without an action flag reports the estimated bloat of tables and indexes and changes nothing', async () => {
    const before = await facts();
    const result = await maintain(contextFor().ctx);
    expect(result.mode).toBe('report');
    expect(result.actions).toEqual([]);
    const table = result.tables.find((t) => t.table === 'bloated')!;
    expect(table.bloatRatio).toBeGreaterThan(0.5);
    expect(table.deadRows).toBe(before.dead);
    const index = result.indexes.find((entry) => entry.index === 'bloated_body')!;
    expect(index.bloatRatio).toBeGreaterThan(0.5);
    expect(index.reindexable).toBe(true);
    // The migrated LMS tables are listed too, with or without statistics.
    expect(result.tables.map((t) => t.table)).toContain('users');
    expect(await facts()).toEqual(before);
  });

  it('--dry-run lists the VACUUM and the REINDEX it would run and runs neither', async () => {
    const before = await facts();
    const run = await runLmsctl(
      ['db', 'maintain', '--vacuum', '--analyze', '--reindex-bloated', '--dry-run', '--json'],
      {
        env: env.vars(),
      },
    );
    expect(run.exitCode).toBe(0);
    const result = JSON.parse(run.stdout) as MaintainResult;
    expect(result.mode).toBe('dry-run');
    expect(statementsOf(result)).toContain('vacuum-analyze public.bloated');
    expect(statementsOf(result)).toContain('reindex public.bloated_body');
    expect(result.actions.every((action) => action.state === 'planned')).toBe(true);
    expect(await facts()).toEqual(before);
  });

  it('refuses (exit 1) while a backup of the database runs, and a backup or restore while it runs', async () => {
    // A backup held up by a table lock: it holds its share of the operation lock until released.
    const blocker = await connectClient(env.database.url, { applicationName: 'lms-tests lock holder' });
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE bloated IN ACCESS EXCLUSIVE MODE');
    const running = backup(contextFor().ctx);
    running.catch(() => undefined);
    const admin = await connectClient(testServerUrl, { applicationName: 'lms-tests' });
    try {
      let backupHolds = false;
      for (let tries = 0; tries < 200 && !backupHolds; tries++) {
        backupHolds = (await lockHolders(admin, env.database.name)).some((h) => h.applicationName === 'lmsctl backup');
        if (!backupHolds) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(backupHolds).toBe(true);
      const before = await facts();
      const refused = await maintain(contextFor().ctx, { vacuum: true, reindexBloated: true }).catch(
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(CliError);
      expect((refused as CliError).exitCode).toBe(1);
      expect((refused as CliError).message).toMatch(
        new RegExp(`^cannot maintain ${env.database.name} on .* while lmsctl backup \\(pid \\d+\\) works on it$`),
      );
      // Refused before anything ran.
      await blocker.query('COMMIT');
      await running;
      expect((await facts()).body).toBe(before.body);
      expect((await facts()).vacuumed).toBe(false);
    } finally {
      await blocker.end();
      await admin.end();
    }

    const maintaining = await holdDatabaseLock(env.database.url, 'exclusive', {
      applicationName: 'lmsctl db maintain',
      doing: 'maintain',
    });
    try {
      const backupRefused = await backup(contextFor().ctx).catch((error: unknown) => error);
      expect((backupRefused as CliError).exitCode).toBe(1);
      expect((backupRefused as CliError).message).toMatch(/^cannot back up .* while lmsctl db maintain \(pid \d+\)/);
      const restoreRefused = await restore(contextFor({ yes: true }).ctx, 'latest').catch((error: unknown) => error);
      expect((restoreRefused as CliError).exitCode).toBe(1);
      expect((restoreRefused as CliError).message).toMatch(/^cannot restore .* while lmsctl db maintain \(pid \d+\)/);
    } finally {
      await maintaining.release();
    }
  });

  it('vacuums the table with dead rows and rebuilds the bloated index over --min-size, concurrently', async () => {
    const before = await facts();
    const { ctx } = contextFor();
    const result = await maintain(ctx, { vacuum: true, analyze: true, reindexBloated: true });
    expect(result.mode).toBe('run');
    expect(result.actions.filter((action) => action.state !== 'done')).toEqual([]);
    expect(statementsOf(result)).toContain('vacuum-analyze public.bloated');
    expect(statementsOf(result)).toContain('reindex public.bloated_body');
    // The primary key (about 4 MiB) is under the default --min-size of 10 MiB: left alone.
    expect(statementsOf(result)).not.toContain('reindex public.bloated_pkey');

    const after = await facts();
    expect(after.dead).toBeLessThan(before.dead / 10);
    expect(after.vacuumed).toBe(true);
    expect(after.body).not.toBe(before.body);
    expect(after.pkey).toBe(before.pkey);
    const { rows } = await db.query<{ valid: boolean }>(
      `SELECT bool_and(indisvalid) AS valid FROM pg_index WHERE indrelid = 'bloated'::regclass`,
    );
    expect(rows[0]!.valid).toBe(true);

    // Rebuilt, the index is no longer over the threshold: a second run has nothing to rebuild.
    const again = await maintain(ctx, { reindexBloated: true, dryRun: true });
    expect(statementsOf(again)).not.toContain('reindex public.bloated_body');
  });

  it('refuses a percentage over 100 with one line (exit 2)', async () => {
    const run = await runLmsctl(['db', 'maintain', '--reindex-bloated', '--min-bloat', '150'], { env: env.vars() });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('--min-bloat must be a percentage from 0 to 100');
  });
});
