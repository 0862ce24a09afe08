import { randomUUID } from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import { expect } from 'vitest';
import { connectClient, createLogger, type Config } from '@lms/core';
import { hashPassword } from '@lms/core/passwords';
import { createTestEnv, type TestEnv } from '@lms/core/testing';
import type pg from 'pg';
import { createApp, type AppOptions } from '../app.js';
import { closeDeps, createDeps, type Deps } from '../deps.js';
import type { Role } from '../http/routes.js';
import { AccessTokens } from '../modules/auth/tokens.js';

export const TEST_SECRET = 'test-secret-key-that-is-long-enough-for-any-environment-0123456789';
export const TEST_PASSWORD = 'correct horse battery staple';

/** Matches what must never appear in a response body: hashes, stacks, source paths, secrets. */
export const LEAKS =
  /\$argon2|password_?hash|passwordHash|\bat .+\.(ts|js):\d+|node_modules|SECRET_KEY|test-secret-key|SQLSTATE|syntax error at/i;

/** What an API under test adds to the core test environment: a secret, and limits no test reaches by accident. */
const API_TEST_VARS = {
  SECRET_KEY: TEST_SECRET,
  DB_POOL_SIZE: '2',
  RATE_LIMIT_PER_MINUTE: '100000',
  RATE_LIMIT_USER_PER_MINUTE: '100000',
  RATE_LIMIT_AUTH_PER_MINUTE: '100000',
};

/** A migrated database and a Redis prefix for an API process (in this process or spawned). */
export function createApiTestEnv(label = 'api'): Promise<TestEnv> {
  return createTestEnv(label, API_TEST_VARS);
}

export interface TestApi {
  /** The database, Redis prefix and settings the app runs on. */
  env: TestEnv;
  app: Express;
  deps: Deps;
  config: Config & { SECRET_KEY: string; DATABASE_URL: string };
  /** A connection for arranging and inspecting data directly. */
  db: pg.Pool;
  close(): Promise<void>;
}

/** A fresh database (migrated), a Redis prefix and an app, all of this test file's own. */
export async function createTestApi(vars: Record<string, string> = {}, options: AppOptions = {}): Promise<TestApi> {
  const env = await createApiTestEnv();
  let opened: Deps | undefined;
  try {
    const parsed = env.config(vars);
    if (!parsed.SECRET_KEY) throw new Error('SECRET_KEY overridden with nothing: the API needs one');
    const config = { ...parsed, SECRET_KEY: parsed.SECRET_KEY };
    // The cache and the rate limits live beside the queues, under the prefix the clean-up removes.
    const deps = createDeps(config, { redisPrefix: `${env.redisPrefix}:`, logger: createLogger({ level: 'silent' }) });
    opened = deps;
    return {
      env,
      app: createApp(deps, options),
      deps,
      config,
      db: deps.db.primary,
      async close() {
        try {
          await closeDeps(deps);
        } finally {
          await env.cleanup();
        }
      },
    };
  } catch (error) {
    if (opened) await closeDeps(opened);
    await env.cleanup();
    throw error;
  }
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
