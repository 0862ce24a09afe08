import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { connectClient, defaultMigrationsDir, readMigrationFiles, withDatabase } from '@lms/core';
import { dropTestDatabase, TEST_DATABASE_PREFIX, testServerUrl } from '@lms/core/testing';
import { runLmsctl } from '../testing/run-cli.js';

/**
 * Waits until `count` sessions are in `CREATE DATABASE name` or queued behind one that is (on
 * a lock it holds): then every run has got past its "does it exist?" check.
 */
async function waitForCreators(admin: pg.Client, name: string, count: number): Promise<void> {
  const create = `CREATE DATABASE ${admin.escapeIdentifier(name)}`;
  for (const started = Date.now(); Date.now() - started < 20_000;) {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity a
        WHERE a.state = 'active'
          AND (a.query = $1 OR EXISTS (
                SELECT 1 FROM pg_stat_activity c WHERE c.query = $1 AND c.pid = ANY (pg_blocking_pids(a.pid))))`,
      [create],
    );
    if (rows[0]!.n >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the ${count} lmsctl runs never all reached CREATE DATABASE ${name}`);
}

describe('lmsctl migrate --create-database (the real binary)', () => {
  it('three processes on a database that does not exist yet all exit 0; one creates it, each migration is recorded once', async () => {
    const name = `${TEST_DATABASE_PREFIX}create_db_${process.pid}_${randomBytes(4).toString('hex')}`;
    const url = withDatabase(testServerUrl, name);
    // Process start-up varies more than CREATE DATABASE takes, so a race would be luck. Holding
    // a lock on template1 (which CREATE DATABASE needs) until all three runs have got past
    // their existence check makes them meet there every time. The comment is rolled back; other
    // creators on the server wait a moment, nothing more.
    const holder = await connectClient(withDatabase(testServerUrl, 'postgres'));
    // Polled outside the holder's transaction, which would see one snapshot of the activity.
    const observer = await connectClient(withDatabase(testServerUrl, 'postgres'));
    try {
      await holder.query('BEGIN');
      await holder.query(`COMMENT ON DATABASE template1 IS 'default template for new databases'`);
      const running = Promise.all(
        Array.from({ length: 3 }, () =>
          runLmsctl(['migrate', 'up', '--create-database', '--json', '--database-url', url]),
        ),
      );
      const stuck = await waitForCreators(observer, name, 3).then(
        () => null,
        (error: unknown) => error as Error,
      );
      await holder.query('ROLLBACK');
      const runs = await running;
      if (stuck) throw stuck;
      for (const run of runs) expect(run.exitCode, run.stderr).toBe(0);
      const results = runs.map((run) => JSON.parse(run.stdout) as { databaseCreated: boolean });
      expect(results.filter((result) => result.databaseCreated)).toHaveLength(1);

      const versions = (await readMigrationFiles(defaultMigrationsDir)).map((file) => file.version);
      const client = await connectClient(url);
      try {
        const { rows } = await client.query<{ version: number; times: number }>(
          'SELECT version, count(*)::int AS times FROM schema_migrations GROUP BY version ORDER BY version',
        );
        expect(rows).toEqual(versions.map((version) => ({ version, times: 1 })));
      } finally {
        await client.end();
      }
    } finally {
      await holder.end();
      await observer.end();
      await dropTestDatabase(name);
    }
  });
});
