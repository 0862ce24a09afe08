import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type Options } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, freePort, type TestDatabase } from '@lms/core/testing';
import { CliError } from '../../errors.js';
import { QUERY_TEXT_LENGTH } from '../../postgres/statements.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { slow, type SlowResult } from './slow.js';

/**
 * A private PostgreSQL with pg_stat_statements preloaded, on a spare port in a temp folder: the
 * shared server of the tests does not preload it, and must not be restarted or reconfigured.
 * As root, PostgreSQL runs as the `postgres` user, as it insists.
 */
async function startPrivateServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const { stdout: binDir } = await execa('pg_config', ['--bindir']);
  const extension = path.join(
    (await execa('pg_config', ['--sharedir'])).stdout,
    'extension',
    'pg_stat_statements.control',
  );
  if (!existsSync(extension)) throw new Error(`${extension} is missing: install PostgreSQL's contrib modules`);
  const folder = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-pgss-'));
  const data = path.join(folder, 'data');
  const asRoot = process.getuid?.() === 0;
  const runAs: Options = {};
  if (asRoot) {
    const uid = Number((await execa('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await execa('id', ['-g', 'postgres'])).stdout);
    await chown(folder, uid, gid);
    Object.assign(runAs, { uid, gid, env: { HOME: folder } });
  }
  const port = await freePort();
  const user = os.userInfo().username;
  const stop = async () => {
    await execa(path.join(binDir, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate'], { ...runAs, reject: false });
    await rm(folder, { recursive: true, force: true });
  };
  try {
    await execa(path.join(binDir, 'initdb'), ['-D', data, '-U', user, '--auth=trust', '--no-sync'], runAs);
    await execa(
      path.join(binDir, 'pg_ctl'),
      [
        'start',
        '-D',
        data,
        '-w',
        '-l',
        path.join(folder, 'server.log'),
        '-o',
        `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${folder} -c shared_preload_libraries=pg_stat_statements -c fsync=off`,
      ],
      runAs,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `postgres://${user}@127.0.0.1:${port}/postgres`, stop };
}

let shared: TestDatabase;
let server: Awaited<ReturnType<typeof startPrivateServer>> | undefined;

beforeAll(async () => {
  shared = await createTestDatabase('db_slow');
  server = await startPrivateServer();
}, 60_000);

afterAll(async () => {
  await shared?.drop();
  await server?.stop();
});

describe('lmsctl db slow', () => {
  it('without pg_stat_statements preloaded: one line saying how to enable it, exit 1', async () => {
    const run = await runLmsctl(['db', 'slow'], { env: { DATABASE_URL: shared.url } });
    expect(run.exitCode).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("shared_preload_libraries = 'pg_stat_statements'");
    expect(lines[0]).toContain('restart PostgreSQL');
    expect(lines[0]).toContain(`CREATE EXTENSION pg_stat_statements; in database ${shared.name}`);
    expect(run.stdout).toBe('');

    // Created in the database but still not loaded by the server: the same advice.
    const client = await connectClient(shared.url, { applicationName: 'lms-tests' });
    try {
      await client.query('CREATE EXTENSION pg_stat_statements');
    } finally {
      await client.end();
    }
    const refused = await slow(testContext({ cwd: os.tmpdir(), env: { DATABASE_URL: shared.url } }).ctx).catch(
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(CliError);
    expect((refused as CliError).exitCode).toBe(1);
    expect((refused as CliError).message).toMatch(/^pg_stat_statements is not loaded: set shared_preload_libraries/);
  });

  it('preloaded but not created in the database: says to CREATE EXTENSION there', async () => {
    const refused = await slow(testContext({ cwd: os.tmpdir(), env: { DATABASE_URL: server!.url } }).ctx).catch(
      (error: unknown) => error,
    );
    expect((refused as CliError).exitCode).toBe(1);
    expect((refused as CliError).message).toMatch(
      /^pg_stat_statements is not installed in postgres: run CREATE EXTENSION pg_stat_statements; in database postgres/,
    );
  });

  it('lists the statements of the database by total time, with calls, mean and rows, texts cut short', async () => {
    const client = await connectClient(server!.url, { applicationName: 'lms-tests' });
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await client.query('SELECT pg_stat_statements_reset()');
      await client.query('CREATE TABLE numbers (n int)');
      // One statement run often and cheaply, one run once over many rows with a long text.
      for (let i = 0; i < 20; i++) await client.query('INSERT INTO numbers VALUES ($1)', [i]);
      const padding = Array.from({ length: 40 }, (_, i) => `n AS column_${i}`).join(', ');
      await client.query(`SELECT ${padding} FROM numbers, generate_series(1, 20000) g ORDER BY g DESC`);
    } finally {
      await client.end();
    }
    const run = await runLmsctl(['db', 'slow', '--limit', '3', '--json'], { env: { DATABASE_URL: server!.url } });
    expect(run.exitCode).toBe(0);
    const result = JSON.parse(run.stdout) as SlowResult;
    expect(result.database).toBe('postgres');
    expect(result.statements.length).toBeLessThanOrEqual(3);
    const totals = result.statements.map((statement) => statement.totalMs);
    expect(totals).toEqual([...totals].sort((a, b) => b - a));
    const insert = await slow(testContext({ cwd: os.tmpdir(), env: { DATABASE_URL: server!.url } }).ctx, {
      limit: 50,
    }).then((all) => all.statements.find((statement) => statement.query.startsWith('INSERT INTO numbers')));
    expect(insert).toMatchObject({ calls: 20, rows: 20, query: 'INSERT INTO numbers VALUES ($1)' });
    const wide = result.statements.find((statement) => statement.query.startsWith('SELECT n AS column_0'));
    expect(wide?.rows).toBe(400_000);
    expect(wide?.query).toHaveLength(QUERY_TEXT_LENGTH);
    expect(wide?.query.endsWith('…')).toBe(true);

    const text = await runLmsctl(['db', 'slow', '--limit', '3'], { env: { DATABASE_URL: server!.url } });
    expect(text.exitCode).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^total\s+calls\s+mean\s+rows\s+query$/);
  });
});
