/**
 * lmsctl with Debian's pgbouncer (started here, in front of the test server): work that needs a
 * session of its own is refused through the pooler with the setting to change, and goes to
 * DATABASE_DIRECT_URL when that is set; `status` reads the pooler's pools.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import {
  createTestDatabase,
  dropTestDatabase,
  startPgBouncer,
  type PgBouncer,
  type TestDatabase,
} from '@lms/core/testing';
import { backup } from '../backup/create.js';
import { backupList } from '../commands/backup/list.js';
import { drill } from '../backup/drill.js';
import { maintain } from '../commands/db/maintain.js';
import { migrateDown, migrateStatus, migrateUp } from '../commands/migrate.js';
import { restore } from '../commands/restore/restore.js';
import { CliError } from '../errors.js';
import { probePgBouncer } from '../health/pgbouncer.js';
import { testContext } from '../testing/context.js';
import { reachesThroughPooler } from './direct-connection.js';

let transaction: PgBouncer;
let session: PgBouncer;
let database: TestDatabase;
let cwd: string;

beforeAll(async () => {
  cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-pgbouncer-'));
  database = await createTestDatabase('lmsctl_pgbouncer');
  transaction = await startPgBouncer({ poolMode: 'transaction' });
  session = await startPgBouncer({ poolMode: 'session' });
});

afterAll(async () => {
  try {
    await Promise.all([transaction?.stop(), session?.stop()]);
    // Created only if the refusal of migrate --create-database failed.
    if (database) await dropTestDatabase(`${database.name}_missing`);
    await database?.drop();
  } finally {
    if (cwd) await rm(cwd, { recursive: true, force: true });
  }
});

const context = (env: Record<string, string>, options: { databaseUrl?: string } = {}) => {
  const { ctx } = testContext({ env, cwd, yes: true });
  return options.databaseUrl
    ? { ...ctx, sessionDatabase: { url: options.databaseUrl, source: '--database-url' as const } }
    : ctx;
};

/** The CliError a command throws (it must throw one). */
async function refusal(work: () => Promise<unknown>): Promise<CliError> {
  const error = await work().then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(CliError);
  return error as CliError;
}

/** Advisory locks held anywhere on the test server's database of this file. */
async function advisoryLocks(): Promise<number> {
  const client = await connectClient(database.url);
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
        WHERE l.locktype = 'advisory' AND d.datname = $1`,
      [database.name],
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

describe('telling a pooler from the server', () => {
  it('sees PgBouncer in transaction and in session mode, and not a direct connection', async () => {
    for (const [url, pooled] of [
      [database.url, false],
      [transaction.urlOf(database.name), true],
      [session.urlOf(database.name), true],
    ] as const) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        expect(await reachesThroughPooler(client), url).toBe(pooled);
      } finally {
        await client.end();
      }
    }
  });
});

describe('work that needs a session of its own, with DATABASE_URL through PgBouncer', () => {
  const commands: Array<[string, string, (ctx: ReturnType<typeof context>) => Promise<unknown>]> = [
    ['migrate', 'migrate', (ctx) => migrateUp(ctx)],
    ['migrate down', 'revert migrations', (ctx) => migrateDown(ctx)],
    ['backup', 'back up', (ctx) => backup(ctx)],
    ['drill', 'drill', (ctx) => drill(ctx)],
    ['restore', 'restore', (ctx) => restore(ctx, 'latest')],
    ['db maintain', 'maintain', (ctx) => maintain(ctx, { vacuum: true })],
  ];

  it.each(commands)('%s is refused (exit 2), naming DATABASE_DIRECT_URL, and leaves no lock', async (_, doing, run) => {
    const pooled = transaction.urlOf(database.name);
    const error = await refusal(() => run(context({ DATABASE_URL: pooled })));
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(
      `cannot ${doing} through a connection pooler: DATABASE_URL (127.0.0.1:${transaction.port}) reaches PostgreSQL through PgBouncer or another pooler, and this needs a session of its own`,
    );
    expect(error.hint).toContain('set DATABASE_DIRECT_URL');
    expect(await advisoryLocks()).toBe(0);
  });

  it('names the setting that points at the pooler: DATABASE_DIRECT_URL, --database-url, --target-database-url', async () => {
    const pooled = transaction.urlOf(database.name);
    const direct = await refusal(() => migrateUp(context({ DATABASE_URL: database.url, DATABASE_DIRECT_URL: pooled })));
    expect(direct.message).toContain('DATABASE_DIRECT_URL (127.0.0.1:');
    expect(direct.hint).toBe("point DATABASE_DIRECT_URL at the server's own address, not at the pooler");
    const flag = await refusal(() => migrateUp(context({}, { databaseUrl: session.urlOf(database.name) })));
    expect(flag.message).toContain(`--database-url (127.0.0.1:${session.port})`);
    const target = await refusal(() =>
      restore(context({ DATABASE_URL: database.url }), 'latest', { targetDatabaseUrl: pooled }),
    );
    expect(target.message).toContain('--target-database-url');
  });

  it('is refused for a database that does not exist yet (migrate --create-database), asked through the server database', async () => {
    const missing = transaction.urlOf(`${database.name}_missing`);
    const error = await refusal(() => migrateUp(context({ DATABASE_URL: missing }), { createDatabase: true }));
    expect(error.message).toContain('cannot migrate through a connection pooler');
  });

  it('goes to DATABASE_DIRECT_URL when it is set; read-only migration commands may use the pooler', async () => {
    const pooled = transaction.urlOf(database.name);
    const dryRun = await migrateUp(context({ DATABASE_URL: pooled }), { dryRun: true });
    expect(dryRun.pending.length).toBeGreaterThan(0);
    const applied = await migrateUp(context({ DATABASE_URL: pooled, DATABASE_DIRECT_URL: database.url }));
    expect(applied.applied.length).toBe(dryRun.pending.length);
    expect(applied.database.port).toBe(5432);
    const status = await migrateStatus(context({ DATABASE_URL: pooled }));
    expect(status.pending).toBe(0);
    expect(await advisoryLocks()).toBe(0);
  });
});

describe('backups with DATABASE_URL through PgBouncer and DATABASE_DIRECT_URL set', () => {
  it("are taken on the server itself, and list addresses them by that address, not the pooler's", async () => {
    const ctx = context({ DATABASE_URL: transaction.urlOf(database.name), DATABASE_DIRECT_URL: database.url });
    const taken = await backup(ctx);
    expect(taken.database).toMatchObject({ name: database.name, host: '127.0.0.1', port: 5432 });
    const listed = await backupList(ctx);
    expect(listed.backups.map((info) => info.file)).toEqual([path.basename(taken.file)]);
    expect(listed.showing).toContain(':5432');
  });
});

describe('status', () => {
  it("shows PgBouncer's pool of the database when DATABASE_URL goes through it, nothing when direct", async () => {
    const pooled = transaction.urlOf(database.name);
    // A connection of the app's, so the pool has something to show.
    const app = new pg.Client({ connectionString: pooled });
    await app.connect();
    try {
      await app.query('SELECT 1');
      const [item] = await probePgBouncer(context({ DATABASE_URL: pooled }));
      expect(item).toMatchObject({ name: 'pgbouncer', state: 'ok' });
      expect(item!.detail).toMatch(
        new RegExp(
          `^PgBouncer \\S+ at 127\\.0\\.0\\.1:${transaction.port}, transaction pooling of ${database.name}: \\d+ clients active, 0 waiting, \\d+ of 4 server connections busy, \\d+ idle; `,
        ),
      );
      expect(item!.data).toMatchObject({ poolMode: 'transaction', clientsWaiting: 0, poolSize: 4 });
    } finally {
      await app.end();
    }
    expect(await probePgBouncer(context({ DATABASE_URL: database.url }))).toEqual([]);
  });
});
