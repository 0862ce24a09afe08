import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, defaultMigrationsDir, Migrator } from '@lms/core';
import { verifyPassword } from '@lms/core/passwords';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { runLmsctl } from '../testing/run-cli.js';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('user_create');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
});

afterAll(async () => {
  await database.drop();
});

describe('lmsctl user create', () => {
  it('creates the first admin with the password from stdin, hashed with argon2id', async () => {
    const run = await runLmsctl(
      [
        'user',
        'create',
        '--email',
        'Ops@Example.com',
        '--name',
        'Ops Team',
        '--role',
        'admin',
        '--password-stdin',
        '--json',
      ],
      { env: { DATABASE_URL: database.url }, input: 'a long enough password\n' },
    );
    expect(run.exitCode, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      id: expect.any(String),
      email: 'ops@example.com',
      name: 'Ops Team',
      role: 'admin',
    });
    expect(`${run.stdout}${run.stderr}`).not.toContain('a long enough password');
    const client = await connectClient(database.url);
    try {
      const { rows } = await client.query<{ password_hash: string }>(
        `SELECT password_hash FROM users WHERE email = 'ops@example.com'`,
      );
      expect(rows[0]!.password_hash).toMatch(/^\$argon2id\$/);
      expect(await verifyPassword(rows[0]!.password_hash, 'a long enough password')).toBe(true);
    } finally {
      await client.end();
    }
  });

  it('refuses a duplicate (exit 1), a short password and a missing password without a terminal (exit 2)', async () => {
    const env = { DATABASE_URL: database.url };
    const args = ['user', 'create', '--email', 'dup@example.com', '--name', 'Dup'];
    expect((await runLmsctl([...args, '--password-stdin'], { env, input: 'first password ok' })).exitCode).toBe(0);
    const again = await runLmsctl([...args, '--password-stdin'], { env, input: 'first password ok' });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain('a user with e-mail dup@example.com already exists');
    const short = await runLmsctl(
      ['user', 'create', '--email', 'short@example.com', '--name', 'S', '--password-stdin'],
      { env, input: 'short' },
    );
    expect(short.exitCode).toBe(2);
    expect(short.stderr).toContain('the password must be 10 to 200 characters');
    // Longer than sign-in accepts: the account could never log in.
    const long = await runLmsctl(['user', 'create', '--email', 'long@example.com', '--name', 'L', '--password-stdin'], {
      env,
      input: 'x'.repeat(201),
    });
    expect(long.exitCode).toBe(2);
    const none = await runLmsctl(['user', 'create', '--email', 'none@example.com', '--name', 'N'], { env });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain('pipe it in with --password-stdin');
    const role = await runLmsctl(
      ['user', 'create', '--email', 'r@example.com', '--name', 'R', '--role', 'root', '--password-stdin'],
      { env, input: 'x'.repeat(12) },
    );
    expect(role.exitCode).toBe(2);
  });
});
