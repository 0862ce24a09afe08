import { randomUUID } from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import { expect } from 'vitest';
import { connectClient, createLogger, defaultMigrationsDir, loadConfig, Migrator, type Config } from '@lms/core';
import { hashPassword } from '@lms/core/passwords';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import type pg from 'pg';
import { createApp, type AppOptions } from '../app.js';
import { closeDeps, createDeps, type Deps } from '../deps.js';
import type { Role } from '../http/routes.js';
import { AccessTokens } from '../modules/auth/tokens.js';

export const TEST_SECRET = 'test-secret-key-that-is-long-enough-for-any-environment-0123456789';
export const TEST_PASSWORD = 'correct horse battery staple';

/** Matches what must never appear in a response body: hashes, stacks, source paths, secrets. */
const LEAKS =
  /\$argon2|password_?hash|passwordHash|\bat .+\.(ts|js):\d+|node_modules|SECRET_KEY|test-secret-key|SQLSTATE|syntax error at/i;

export interface TestApi {
  app: Express;
  deps: Deps;
  database: TestDatabase;
  config: Config & { SECRET_KEY: string; DATABASE_URL: string };
  /** A connection for arranging and inspecting data directly. */
  db: pg.Pool;
  close(): Promise<void>;
}

/** A fresh database (migrated), a Redis prefix and an app, all of this test file's own. */
export async function createTestApi(env: Record<string, string> = {}, options: AppOptions = {}): Promise<TestApi> {
  const database = await createTestDatabase('api');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  const prefix = testRedisPrefix('api');
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl,
    SECRET_KEY: TEST_SECRET,
    QUEUE_PREFIX: `${prefix}:q`,
    LOG_LEVEL: 'silent',
    DB_POOL_SIZE: '2',
    DB_MAX_OVERFLOW: '8',
    RATE_LIMIT_PER_MINUTE: '100000',
    RATE_LIMIT_USER_PER_MINUTE: '100000',
    RATE_LIMIT_AUTH_PER_MINUTE: '100000',
    ...env,
  }) as Config & { SECRET_KEY: string; DATABASE_URL: string };
  const deps = createDeps(config, { redisPrefix: `${prefix}:`, logger: createLogger({ level: 'silent' }) });
  const app = createApp(deps, options);
  return {
    app,
    deps,
    database,
    config,
    db: deps.db.primary,
    async close() {
      for (const name of ['emails', 'progress', 'certificates', 'webhooks'] as const) {
        await deps.jobs
          .queue(name)
          .obliterate({ force: true })
          .catch(() => undefined);
      }
      const keys = await deps.redis.keys(`${prefix}*`).catch(() => [] as string[]);
      if (keys.length) await deps.redis.del(...keys).catch(() => undefined);
      await closeDeps(deps);
      await database.drop();
    },
  };
}

let passwordHash: Promise<string> | null = null;

export interface TestUser {
  id: string;
  email: string;
  name: string;
  role: Role;
  token: string;
}

/** A user inserted directly (one argon2 hash per test file) with a valid access token. */
export async function createUser(
  api: TestApi,
  role: Role = 'student',
  overrides: { email?: string; name?: string; active?: boolean } = {},
): Promise<TestUser> {
  passwordHash ??= hashPassword(TEST_PASSWORD);
  const email = overrides.email ?? `${role}-${randomUUID().slice(0, 8)}@example.com`;
  const name = overrides.name ?? `Test ${role}`;
  const { rows } = await api.db.query<{ id: string }>(
    'INSERT INTO users (email, name, password_hash, role, active) VALUES ($1, $2, $3, $4, $5) RETURNING id',
    [email, name, await passwordHash, role, overrides.active ?? true],
  );
  const id = rows[0]!.id;
  const token = await new AccessTokens(api.config.SECRET_KEY, 900).issue({ id, role }, randomUUID());
  return { id, email, name, role, token };
}

/** A course of `instructor`, optionally published, with `lessons` lessons. */
export async function createCourse(
  api: TestApi,
  instructor: TestUser,
  options: { published?: boolean; lessons?: number; title?: string } = {},
): Promise<{ id: string; lessonIds: string[] }> {
  const { rows } = await api.db.query<{ id: string }>(
    `INSERT INTO courses (instructor_id, title, description, status, published_at)
     VALUES ($1, $2, 'About it', $3, CASE WHEN $3 = 'published' THEN now() END) RETURNING id`,
    [
      instructor.id,
      options.title ?? `Course ${randomUUID().slice(0, 6)}`,
      options.published === false ? 'draft' : 'published',
    ],
  );
  const id = rows[0]!.id;
  const lessonIds: string[] = [];
  for (let position = 1; position <= (options.lessons ?? 2); position++) {
    const lesson = await api.db.query<{ id: string }>(
      `INSERT INTO lessons (course_id, position, title, body) VALUES ($1, $2, $3, 'Body') RETURNING id`,
      [id, position, `Lesson ${position}`],
    );
    lessonIds.push(lesson.rows[0]!.id);
  }
  return { id, lessonIds };
}

export interface Call {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/**
 * One HTTP call against the app, checked for leaks: no response body ever carries a password
 * hash, a stack trace, a source path, SQL internals or a secret.
 */
export async function call(
  api: TestApi | Express,
  method: 'get' | 'post' | 'patch' | 'delete',
  path: string,
  options: Call = {},
) {
  const app = 'app' in api ? api.app : api;
  let test = request(app)[method](path);
  if (options.token) test = test.set('Authorization', `Bearer ${options.token}`);
  for (const [name, value] of Object.entries(options.headers ?? {})) test = test.set(name, value);
  const response = options.body === undefined ? await test : await test.send(options.body as object);
  expect(response.text ?? '', `${method.toUpperCase()} ${path} leaked internals`).not.toMatch(LEAKS);
  return response;
}

/** Runs SQL with a fresh connection (for checks that must not reuse the app's pool). */
export async function sql<T extends Record<string, unknown>>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = await connectClient(url);
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}
