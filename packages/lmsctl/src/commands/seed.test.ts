import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, defaultMigrationsDir, Migrator } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { runLmsctl } from '../testing/run-cli.js';
import { testContext } from '../testing/context.js';
import { seed } from './seed.js';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('seed');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
});

afterAll(async () => {
  await database.drop();
});

describe('lmsctl seed', () => {
  it('loads demo data once, prints the generated passwords, and keeps them out of --json', async () => {
    const first = await runLmsctl(['seed', '--database-url', database.url]);
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toContain('seeded 15 users, 4 courses, 16 lessons, 4 quizzes,');
    const adminPassword = /admin@lms\.local \/ (\S+)/.exec(first.stdout)?.[1];
    expect(adminPassword).toMatch(/^[\w-]{16}$/);

    const client = await connectClient(database.url);
    const counts = await client
      .query<{ users: number; published: number; completions: number }>(
        `SELECT (SELECT count(*)::int FROM users) AS users,
                (SELECT count(*)::int FROM courses WHERE status = 'published') AS published,
                (SELECT count(*)::int FROM lesson_completions) AS completions`,
      )
      .finally(() => client.end());
    expect(counts.rows[0]).toMatchObject({ users: 15, published: 3 });
    expect(counts.rows[0]!.completions).toBeGreaterThan(0);

    const again = await runLmsctl(['seed', '--database-url', database.url, '--json']);
    expect(again.exitCode).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ seeded: false, reason: expect.stringContaining('15 user(s)') });
  });

  it('never prints a password in --json', async () => {
    const empty = await createTestDatabase('seed_json');
    try {
      await new Migrator({ connectionString: empty.url, dir: defaultMigrationsDir }).up();
      const run = await runLmsctl(['seed', '--database-url', empty.url, '--json']);
      expect(run.exitCode).toBe(0);
      const result = JSON.parse(run.stdout) as Record<string, unknown>;
      expect(result).toEqual({
        seeded: true,
        admin: { email: 'admin@lms.local' },
        counts: expect.objectContaining({ users: 15 }),
      });
      expect(run.stdout).not.toMatch(/password/i);
    } finally {
      await empty.drop();
    }
  });

  it('refuses production', async () => {
    const { ctx } = testContext({
      cwd: process.cwd(),
      env: {
        NODE_ENV: 'production',
        DATABASE_URL: database.url,
        SECRET_KEY: 'x'.repeat(64),
        WEBHOOK_SECRET_KEY: '0'.repeat(64),
      },
    });
    await expect(seed(ctx)).rejects.toThrow('refusing to load demo data with NODE_ENV=production');
  });
});
