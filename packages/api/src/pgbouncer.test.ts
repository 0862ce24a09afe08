/**
 * The API behind Debian's pgbouncer in transaction mode (started here, in front of the test
 * server): a learner's whole journey through it, and `lmsctl migrate` beside it — refused through
 * the pooler (its session advisory lock would stay behind on a pooled server connection and block
 * the next run), applied on DATABASE_DIRECT_URL while the API keeps serving through PgBouncer.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, defaultMigrationsDir } from '@lms/core';
import { startPgBouncer, type PgBouncer, type TestEnv } from '@lms/core/testing';
import { createApp } from './app.js';
import { closeDeps, createDeps, type Deps } from './deps.js';
import { call, createApiTestEnv, createUser, sql, TEST_PASSWORD, type TestApi } from './testing/test-app.js';

/** The repository's lmsctl command, as `pnpm exec lmsctl` runs it (from the sources). */
const lmsctlBin = fileURLToPath(new URL('../../lmsctl/bin/lmsctl.js', import.meta.url));

let env: TestEnv;
let bouncer: PgBouncer;
let deps: Deps | undefined;
let api: TestApi;
let pooledUrl: string;

// afterAll runs after a failed beforeAll too: it undoes whatever was started.
beforeAll(async () => {
  env = await createApiTestEnv('pgbouncer');
  bouncer = await startPgBouncer({ poolMode: 'transaction', poolSize: 3 });
  pooledUrl = bouncer.urlOf(env.database.name);
  const parsed = env.config({ DATABASE_URL: pooledUrl, DATABASE_DIRECT_URL: env.database.url });
  if (!parsed.SECRET_KEY) throw new Error('the API test environment sets no SECRET_KEY');
  const config = { ...parsed, SECRET_KEY: parsed.SECRET_KEY };
  deps = createDeps(config, { redisPrefix: `${env.redisPrefix}:`, logger: createLogger({ level: 'silent' }) });
  api = { env, app: createApp(deps, {}), deps, config, db: deps.db.primary, close: () => Promise.resolve() };
});

afterAll(async () => {
  try {
    if (deps) await closeDeps(deps);
    await bouncer?.stop();
  } finally {
    await env?.cleanup();
  }
});

/** The test database's pool on PgBouncer's admin console, and its transaction count so far. */
async function pgbouncerTraffic(): Promise<{ transactions: number; poolMode: string }> {
  const admin = new pg.Client({ connectionString: bouncer.adminUrl });
  await admin.connect();
  try {
    const stats = (await admin.query<{ database: string; total_xact_count: string }>('SHOW STATS')).rows;
    const pools = (await admin.query<{ database: string; pool_mode: string }>('SHOW POOLS')).rows;
    return {
      transactions: Number(stats.find((row) => row.database === env.database.name)?.total_xact_count ?? 0),
      poolMode: pools.find((row) => row.database === env.database.name)?.pool_mode ?? 'none',
    };
  } finally {
    await admin.end();
  }
}

/** Advisory locks held on the test database, by anyone (seen on the server itself). */
async function advisoryLocks(): Promise<number> {
  const rows = await sql<{ n: number }>(
    env.database.url,
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
      WHERE l.locktype = 'advisory' AND d.datname = current_database()`,
  );
  return rows[0]!.n;
}

/** The real lmsctl with only `vars` (and PATH, HOME), in a folder without a .env of anyone's. */
function lmsctl(args: string[], vars: Record<string, string>, cwd: string) {
  return execa(process.execPath, ['--', lmsctlBin, ...args], {
    reject: false,
    extendEnv: false,
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...vars },
  });
}

describe('the API through PgBouncer (transaction pooling)', () => {
  it('serves a learner from registration to a completed lesson, every query through the pooler', async () => {
    const before = await pgbouncerTraffic();
    // The pool really goes through PgBouncer: the process id it was given is not the server's.
    const client = await api.db.connect();
    try {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect((client as unknown as { processID: number }).processID).not.toBe(rows[0]!.pid);
    } finally {
      client.release();
    }

    expect((await call(api, 'get', '/ready')).body).toMatchObject({ status: 'ready' });
    const instructor = await createUser(api, 'instructor');
    const course = await call(api, 'post', '/api/v1/courses', {
      token: instructor.token,
      body: { title: 'Pooling 101', description: 'Connections, shared' },
    });
    expect(course.status).toBe(201);
    const courseId = course.body.id as string;
    const lessons: string[] = [];
    for (const title of ['Sessions', 'Transactions']) {
      const lesson = await call(api, 'post', `/api/v1/courses/${courseId}/lessons`, {
        token: instructor.token,
        body: { title },
      });
      expect(lesson.status).toBe(201);
      lessons.push(lesson.body.id as string);
    }
    expect((await call(api, 'post', `/api/v1/courses/${courseId}/publish`, { token: instructor.token })).status).toBe(
      200,
    );

    const email = `learner-${env.database.name.slice(-8)}@example.com`;
    const registered = await call(api, 'post', '/api/v1/auth/register', {
      body: { email, password: TEST_PASSWORD, name: 'Ada Lovelace' },
    });
    expect(registered.status).toBe(201);
    const login = await call(api, 'post', '/api/v1/auth/login', { body: { email, password: TEST_PASSWORD } });
    expect(login.status).toBe(200);
    const token = login.body.accessToken as string;
    expect((await call(api, 'get', '/api/v1/users/me', { token })).body).toMatchObject({ email });

    const catalogue = await call(api, 'get', '/api/v1/courses', { token });
    expect(catalogue.body.items.map((item: { id: string }) => item.id)).toContain(courseId);
    const enrolled = await call(api, 'post', `/api/v1/courses/${courseId}/enroll`, { token });
    expect(enrolled.status).toBe(201);
    const enrollmentId = enrolled.body.id as string;
    const done = await call(api, 'post', `/api/v1/enrollments/${enrollmentId}/lessons/${lessons[0]}/complete`, {
      token,
    });
    expect(done.status).toBe(200);
    const mine = await call(api, 'get', '/api/v1/enrollments', { token });
    expect(mine.body.items.map((item: { id: string }) => item.id)).toEqual([enrollmentId]);

    const refreshed = await call(api, 'post', '/api/v1/auth/refresh', {
      body: { refreshToken: login.body.refreshToken as string },
    });
    expect(refreshed.status).toBe(200);
    expect(
      (
        await call(api, 'post', '/api/v1/auth/logout', {
          body: { refreshToken: refreshed.body.refreshToken as string },
        })
      ).status,
    ).toBeLessThan(300);

    // What the API did is on the server, and it went through PgBouncer's transaction pool.
    const completions = await sql(env.database.url, 'SELECT 1 FROM lesson_completions WHERE enrollment_id = $1', [
      enrollmentId,
    ]);
    expect(completions).toHaveLength(1);
    const after = await pgbouncerTraffic();
    expect(after.poolMode).toBe('transaction');
    expect(after.transactions - before.transactions).toBeGreaterThan(10);
  });

  it('lmsctl migrate refuses through PgBouncer naming DATABASE_DIRECT_URL, and applies there while the API serves through it', async () => {
    // The project's migrations and one more, pending on the test database.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-pgbouncer-migrations-'));
    try {
      await cp(defaultMigrationsDir, dir, { recursive: true });
      await writeFile(
        path.join(dir, '9001_pgbouncer_probe.sql'),
        'CREATE TABLE pgbouncer_probe (id int PRIMARY KEY);\n-- migrate:down\nDROP TABLE pgbouncer_probe;\n',
      );
      const migrate = ['migrate', '--migrations-dir', dir, '--lock-timeout', '5s'];

      const refused = await lmsctl(migrate, { DATABASE_URL: pooledUrl }, dir);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toContain('cannot migrate through a connection pooler');
      expect(refused.stderr).toContain('set DATABASE_DIRECT_URL');
      expect(refused.stderr).not.toContain('Error:');
      expect(await sql(env.database.url, `SELECT to_regclass('pgbouncer_probe') AS t`)).toEqual([{ t: null }]);
      expect(await advisoryLocks()).toBe(0);

      // The API keeps serving learners through PgBouncer while lmsctl migrates on the server itself.
      const learner = await createUser(api, 'student');
      let serving = true;
      const statuses: number[] = [];
      const traffic = (async () => {
        while (serving) {
          statuses.push((await call(api, 'get', '/api/v1/enrollments', { token: learner.token })).status);
          statuses.push((await call(api, 'get', '/api/v1/users/me', { token: learner.token })).status);
        }
      })();
      const direct = { DATABASE_URL: pooledUrl, DATABASE_DIRECT_URL: env.database.url };
      const applied = await lmsctl([...migrate, '--json'], direct, dir).finally(() => (serving = false));
      await traffic;
      expect(applied.exitCode, applied.stderr).toBe(0);
      expect(JSON.parse(applied.stdout)).toMatchObject({
        applied: [expect.objectContaining({ id: '9001_pgbouncer_probe' })],
      });
      expect(statuses.length).toBeGreaterThan(0);
      expect(new Set(statuses)).toEqual(new Set([200]));
      // Its lock ended with its own connection: nothing is left for the next run to wait on.
      expect(await advisoryLocks()).toBe(0);
      const again = await lmsctl([...migrate, '--json'], direct, dir);
      expect(again.exitCode).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ applied: [] });
      // The API reads the new table through the pooler.
      expect((await api.db.query('SELECT count(*)::int AS n FROM pgbouncer_probe')).rows).toEqual([{ n: 0 }]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
