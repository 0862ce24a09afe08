import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { dropDatabasesOf } from '../testing/backup-fixtures.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, testServerUrl, type TestDatabase } from '@lms/core/testing';
import { backup } from '../backup/create.js';
import { testContext } from '../testing/context.js';
import { descendantsOf, isRunning, readProcess, stillRunningAfter, type ProcessInfo } from '../testing/process-tree.js';
import { runLmsctl, spawnLmsctl } from '../testing/run-cli.js';
import { startPgTool, toolFailure } from './tools.js';

let database: TestDatabase;
let work: string;
let env: Record<string, string>;

beforeAll(async () => {
  // Short label: "<name>_copy_restoring_<time>" must fit PostgreSQL's 63 bytes untruncated.
  database = await createTestDatabase('kids');
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-children-'));
  env = { DATABASE_URL: database.url, LMS_BACKUP_DIR: path.join(work, 'db') };
  await sql(
    database.url,
    `CREATE TABLE blocker (id int);
     -- Sleeps only inside a database being restored: restoring this table keeps pg_restore busy.
     CREATE FUNCTION slow_in_restore(value int) RETURNS boolean LANGUAGE plpgsql AS $$
     BEGIN
       IF current_database() LIKE '%\\_restoring\\_%' THEN PERFORM pg_sleep(60); END IF;
       RETURN value IS NOT NULL;
     END $$;
     CREATE TABLE guarded (id int PRIMARY KEY CHECK (slow_in_restore(id)));
     INSERT INTO guarded SELECT generate_series(1, 10);`,
  );
  await backup(testContext({ cwd: work, env }).ctx);
});

afterAll(async () => {
  // The database, and what the restore made beside it ("<name>_copy_restoring_…").
  await dropDatabasesOf(database);
  await rm(work, { recursive: true, force: true });
});

async function sql(url: string, text: string): Promise<void> {
  const client = await connectClient(url);
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A session holding ACCESS EXCLUSIVE on `blocker` until released: pg_dump waits for it. */
async function lockBlocker(): Promise<{ release(): Promise<void> }> {
  const client = await connectClient(database.url, { applicationName: 'lms-tests lock holder' });
  await client.query('BEGIN');
  await client.query('LOCK TABLE blocker IN ACCESS EXCLUSIVE MODE');
  let released: Promise<void> | undefined;
  return {
    release: () =>
      (released ??= client
        .query('ROLLBACK')
        .catch(() => undefined)
        .then(() => client.end())),
  };
}

/** Polls until `holds()` is true; fails at once, with what it said, if lmsctl (`child`) ends first. */
async function waitUntil(what: string, holds: () => Promise<boolean>, child?: ReturnType<typeof spawnLmsctl>) {
  for (const started = Date.now(); Date.now() - started < 20_000;) {
    if (await holds()) return;
    if (child && child.exitCode !== null)
      throw new Error(`lmsctl ended before ${what}: ${String((await child).stderr)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** pg_dump's session: the libpq application name lmsctl gives its tools, locking the tables to dump. */
const DUMP_SESSION = `datname = $1 AND application_name = 'lmsctl' AND query LIKE 'LOCK TABLE % IN ACCESS SHARE MODE'`;

async function sessionCount(observer: pg.Client, where: string, params: unknown[]): Promise<number> {
  const { rows } = await observer.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${where}`,
    params,
  );
  return rows[0]!.n;
}

/** The client tools among the processes below `pid`. */
async function toolsBelow(pid: number, tool: string): Promise<ProcessInfo[]> {
  return (await descendantsOf(pid)).filter((info) => info.command === tool);
}

describe('client tools die with lmsctl', () => {
  it('SIGKILL of lmsctl mid-backup ends its pg_dump at once; the next backup removes the leftover file', async () => {
    const lock = await lockBlocker();
    const observer = await connectClient(withDatabase(testServerUrl, 'postgres'));
    const child = spawnLmsctl(['backup'], { env, cwd: work });
    try {
      await waitUntil(
        'pg_dump waiting for its table lock',
        async () => (await sessionCount(observer, `${DUMP_SESSION} AND wait_event_type = 'Lock'`, [database.name])) > 0,
        child,
      );
      const dumps = await toolsBelow(child.pid!, 'pg_dump');
      expect(dumps.map((info) => info.ppid)).toEqual([child.pid]);

      process.kill(child.pid!, 'SIGKILL');
      await child;
      expect(await stillRunningAfter(dumps, 2000)).toEqual([]);
      // Stopped by its death signal, pg_dump cancelled its wait on the server too.
      await waitUntil(
        'no pg_dump session left',
        async () => (await sessionCount(observer, DUMP_SESSION, [database.name])) === 0,
      );

      const leftovers = (await readdir(env.LMS_BACKUP_DIR!)).filter((name) => name.endsWith('.partial'));
      expect(leftovers).toHaveLength(1);
      await lock.release();
      const next = await runLmsctl(['backup', '--verbose'], { env, cwd: work });
      expect(next.exitCode, next.stderr).toBe(0);
      expect(next.stderr).toContain(`removed ${leftovers[0]} left by an interrupted backup`);
      expect((await readdir(env.LMS_BACKUP_DIR!)).filter((name) => name.endsWith('.partial'))).toEqual([]);
    } finally {
      // Only this test's process group: lmsctl and whatever it started.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone, which is the point.
      }
      await lock.release();
      await observer.end();
    }
  });

  it('SIGKILL of lmsctl mid-restore ends pg_restore and its parallel workers at once', async () => {
    const observer = await connectClient(withDatabase(testServerUrl, 'postgres'));
    const target = withDatabase(testServerUrl, `${database.name}_copy`);
    const child = spawnLmsctl(
      [
        'restore',
        'latest',
        '--from-database',
        database.name,
        '--create',
        '--target-database-url',
        target,
        '--yes',
        '--jobs',
        '2',
      ],
      { env, cwd: work },
    );
    const restoring = `${database.name}\\_copy\\_restoring\\_%`;
    try {
      await waitUntil(
        'a pg_restore worker restoring the slow table',
        async () => (await sessionCount(observer, `datname LIKE $1 AND wait_event = 'PgSleep'`, [restoring])) > 0,
        child,
      );
      const restores = await toolsBelow(child.pid!, 'pg_restore');
      // The leader, started by lmsctl, and at least one worker it forked.
      const leader = restores.find((info) => info.ppid === child.pid);
      expect(leader).toBeDefined();
      expect(restores.some((info) => info.ppid === leader!.pid)).toBe(true);

      process.kill(child.pid!, 'SIGKILL');
      await child;
      expect(await stillRunningAfter(restores, 2000)).toEqual([]);
      // The workers cancelled their statements: no sleeping COPY keeps loading the server.
      await waitUntil(
        'no session left in the half-restored database',
        async () => (await sessionCount(observer, `datname LIKE $1`, [restoring])) === 0,
      );
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone, which is the point.
      }
      await observer.end();
    }
  });

  it('a tool outlives the end of another thread, and cancellation reaches the tool itself (its pid is pg_dump, not a launcher)', async () => {
    const lock = await lockBlocker();
    const observer = await connectClient(withDatabase(testServerUrl, 'postgres'));
    const cancel = new AbortController();
    const dump = startPgTool('pg_dump', ['--schema-only', '--no-password'], {
      env: { PATH: process.env.PATH ?? '' },
      url: database.url,
      cancelSignal: cancel.signal,
    });
    const outcome = dump.then(
      () => null,
      (error: unknown) => toolFailure('pg_dump', error),
    );
    try {
      await waitUntil(
        'pg_dump waiting for its table lock',
        async () => (await sessionCount(observer, `${DUMP_SESSION} AND wait_event_type = 'Lock'`, [database.name])) > 0,
      );
      const info = await readProcess(dump.pid!);
      expect(info?.command).toBe('pg_dump');
      // The death signal follows the thread that forked: another thread of this process ending
      // must not stop a tool started, as lmsctl starts them, from the main thread.
      await new Promise((resolve, reject) => {
        const thread = new Worker('', { eval: true });
        thread.once('exit', resolve);
        thread.once('error', reject);
      });
      expect(await sessionCount(observer, `${DUMP_SESSION} AND wait_event_type = 'Lock'`, [database.name])).toBe(1);
      expect(await isRunning(info!)).toBe(true);

      cancel.abort();
      expect(await outcome).toMatchObject({ isCanceled: true });
      expect(await stillRunningAfter([info!], 0)).toEqual([]);
    } finally {
      dump.kill('SIGKILL');
      await outcome;
      await lock.release();
      await observer.end();
    }
  });

  it('a missing tool still fails with the install hint', async () => {
    const empty = await mkdtemp(path.join(work, 'no-tools-'));
    const failure = await startPgTool('pg_restore', ['--list', 'nothing.dump'], {
      binDir: empty,
      env: { PATH: process.env.PATH ?? '' },
    }).then(
      () => null,
      (error: unknown) => toolFailure('pg_restore', error),
    );
    expect(failure?.message).toMatch(/^pg_restore not found: install the PostgreSQL client tools/);
  });
});
