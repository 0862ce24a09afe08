import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, defaultMigrationsDir, Migrator, withDatabase } from '@lms/core';
import { createCourse, createTestApi, createUser, type TestApi, type TestUser } from './testing/test-app.js';
import { startOwnPostgres, type OwnPostgres } from './testing/own-postgres.js';

/**
 * The API on a PostgreSQL of this test's own, which the test freezes (SIGSTOP), stops and
 * starts under it: every request answers within the configured timeout (+ 1 s of slack), 503
 * while the database cannot answer, 200 again once it can, without restarting the API.
 */

/** The configured timeout: waiting for a pool connection, and for the answer to a query. */
const TIMEOUT_SECONDS = 2;
/** The bound of issue 17: no request takes longer than the configured timeout + 1 s. */
const BOUND_MS = (TIMEOUT_SECONDS + 1) * 1000;
/** How long the database stays frozen. */
const FREEZE_MS = 10_000;
/** A request still unanswered after this has hung (the test stops waiting for it). */
const HANG_MS = 30_000;

let own: OwnPostgres;
let api: TestApi;
let server: Server;
let base: string;
let student: TestUser;
let enrollmentId: string;
let lessonId: string;

beforeAll(async () => {
  own = await startOwnPostgres();
  const admin = await connectClient(own.url);
  try {
    await admin.query('CREATE DATABASE lms');
  } finally {
    await admin.end();
  }
  const url = withDatabase(own.url, 'lms');
  await new Migrator({ connectionString: url, dir: defaultMigrationsDir }).up();
  api = await createTestApi({
    DATABASE_URL: url,
    DB_POOL_SIZE: '2',
    DB_MAX_OVERFLOW: '4',
    DB_POOL_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
    DB_STATEMENT_TIMEOUT_SECONDS: '1',
    DB_QUERY_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
  });
  server = api.app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const instructor = await createUser(api, 'instructor');
  student = await createUser(api, 'student');
  const course = await createCourse(api, instructor, { lessons: 1 });
  lessonId = course.lessonIds[0]!;
  const { rows } = await api.db.query<{ id: string }>(
    'INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2) RETURNING id',
    [student.id, course.id],
  );
  enrollmentId = rows[0]!.id;
}, 120_000);

afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  try {
    await api?.close();
  } finally {
    await own?.destroy();
  }
});

interface Outcome {
  what: string;
  /** The HTTP status, or 0 when no answer came within HANG_MS. */
  status: number;
  ms: number;
  startedAt: number;
  retryAfter: string | null;
  text: string;
}

async function send(what: string, path: string, init: RequestInit = {}): Promise<Outcome> {
  const startedAt = Date.now();
  try {
    const response = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(HANG_MS) });
    const text = await response.text();
    return {
      what,
      status: response.status,
      ms: Date.now() - startedAt,
      startedAt,
      retryAfter: response.headers.get('retry-after'),
      text,
    };
  } catch {
    return { what, status: 0, ms: Date.now() - startedAt, startedAt, retryAfter: null, text: '' };
  }
}

/** One request of each kind that needs the database: a read, a list, and a write in a transaction. */
function batch(): Array<Promise<Outcome>> {
  const auth = { Authorization: `Bearer ${student.token}` };
  return [
    send('me', '/api/v1/users/me', { headers: auth }),
    send('enrollments', '/api/v1/enrollments', { headers: auth }),
    send('complete', `/api/v1/enrollments/${enrollmentId}/lessons/${lessonId}/complete`, {
      method: 'POST',
      headers: auth,
    }),
  ];
}

/**
 * Starts the requests of `batch()` every 200 ms and a readiness probe every second, for `ms`;
 * resolves then with the requests still under way.
 */
async function traffic(ms: number): Promise<Array<Promise<Outcome>>> {
  const pending: Array<Promise<Outcome>> = [];
  const end = Date.now() + ms;
  for (let round = 0; Date.now() < end; round++) {
    pending.push(...batch());
    if (round % 5 === 0) pending.push(send('ready', '/ready'));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return pending;
}

async function waitUntilReady(): Promise<void> {
  let last: Outcome | undefined;
  for (const started = Date.now(); Date.now() - started < 60_000;) {
    last = await send('ready', '/ready');
    if (last.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`the API did not become ready again: ${last?.status} ${last?.text}`);
}

const describeOutcomes = (outcomes: Outcome[]) =>
  outcomes.map((outcome) => `${outcome.what} ${outcome.status || 'hung'} ${outcome.ms} ms`).join(', ');

/** Every request answered within the bound; the slow ones are named in the failure. */
function expectAllWithinBound(outcomes: Outcome[]) {
  const slow = outcomes.filter((outcome) => outcome.status === 0 || outcome.ms > BOUND_MS);
  expect(slow, `requests over ${BOUND_MS} ms: ${describeOutcomes(slow)}`).toEqual([]);
}

/** A 503 that says what it is, asks to retry later, and leaks nothing of the driver. */
function expectUnavailable(outcome: Outcome) {
  expect(outcome.status, `${outcome.what}: ${outcome.text}`).toBe(503);
  expect(outcome.text).not.toMatch(/ECONNREFUSED|timeout|terminated|127\.0\.0\.1|postgres/i);
  if (outcome.what === 'ready') {
    expect(JSON.parse(outcome.text)).toEqual({
      status: 'not ready',
      checks: { database: 'unavailable', redis: 'ok' },
    });
  } else {
    expect(JSON.parse(outcome.text)).toMatchObject({ error: { code: 'service_unavailable' } });
    expect(outcome.retryAfter).toBe('5');
  }
}

async function expectServing() {
  const outcomes = await Promise.all([...batch(), send('ready', '/ready')]);
  expect(
    outcomes.filter((outcome) => outcome.status !== 200),
    describeOutcomes(outcomes),
  ).toEqual([]);
}

describe('PostgreSQL outages', () => {
  it('readiness uses a connection of its own: it answers while the pool is used up', async () => {
    const held = await Promise.all(Array.from({ length: 6 }, () => api.db.connect()));
    try {
      expect(api.db.totalCount).toBe(api.db.options.max);
      const ready = await send('ready', '/ready');
      expect(ready.status).toBe(200);
      expect(api.db.waitingCount).toBe(0);
      // The requests that need the pool meanwhile get a 503, not a hang.
      expectUnavailable(
        await send('me', '/api/v1/users/me', { headers: { Authorization: `Bearer ${student.token}` } }),
      );
    } finally {
      for (const client of held) client.release();
    }
  });

  it('answers 503 within the timeout while the database is frozen, and 200 again once it thaws', async () => {
    await expectServing();
    await own.freeze();
    const frozenAt = Date.now();
    let pending: Array<Promise<Outcome>>;
    try {
      pending = await traffic(FREEZE_MS);
    } finally {
      own.thaw();
    }
    const thawedAt = Date.now();
    // Requests still waiting when the database thaws finish now; one that still does not has hung.
    const outcomes = await Promise.all(pending);
    expectAllWithinBound(outcomes);
    const during = outcomes.filter(
      (outcome) => outcome.startedAt >= frozenAt && outcome.startedAt + outcome.ms < thawedAt,
    );
    expect(during.length).toBeGreaterThan(100);
    for (const outcome of during) expectUnavailable(outcome);
    for (const outcome of outcomes) expect([200, 503]).toContain(outcome.status);

    await waitUntilReady();
    await expectServing();
  }, 120_000);

  it('answers 503 at once while the server is stopped, and 200 again once it is back', async () => {
    await own.stop();
    try {
      const outcomes = await Promise.all([...batch(), ...batch(), send('ready', '/ready')]);
      expectAllWithinBound(outcomes);
      for (const outcome of outcomes) expectUnavailable(outcome);
    } finally {
      await own.start();
    }
    await waitUntilReady();
    await expectServing();
  }, 120_000);
});
