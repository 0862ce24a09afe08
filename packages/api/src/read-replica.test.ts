import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, createLogger, defaultMigrationsDir, Migrator, withDatabase } from '@lms/core';
import { startStreamingReplica, type StreamingReplica } from '@lms/core/testing';
import { createApp } from './app.js';
import { closeDeps, createDeps } from './deps.js';
import { call, createApiTestEnv, createCourse, createUser, type TestApi, type TestUser } from './testing/test-app.js';

/**
 * The API on a primary of this test's own with a real hot standby streaming from it
 * (`pg_basebackup -R`), which the test pauses (`pg_wal_replay_pause()`) and stops under it.
 */

/** Short, so that lagging past it happens within the test. */
const MAX_LAG_SECONDS = 4;

let pair: StreamingReplica | undefined;
let api: TestApi;
let admin: TestUser;
const logLines: Array<{ level: string; msg: string }> = [];

beforeAll(async () => {
  pair = await startStreamingReplica();
  const client = await connectClient(pair.primaryUrl);
  try {
    await client.query('CREATE DATABASE lms');
  } finally {
    await client.end();
  }
  const primaryUrl = withDatabase(pair.primaryUrl, 'lms');
  await new Migrator({ connectionString: primaryUrl, dir: defaultMigrationsDir }).up();
  await pair.caughtUp();

  // The harness's environment gives the Redis prefix (and a database this test does not use).
  const env = await createApiTestEnv('replica');
  const config = env.config({
    DATABASE_URL: primaryUrl,
    DATABASE_READ_URL: withDatabase(pair.replicaUrl, 'lms'),
    REPLICA_MAX_LAG_SECONDS: String(MAX_LAG_SECONDS),
    REPLICA_CHECK_INTERVAL_SECONDS: '1',
  }) as TestApi['config'];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  const deps = createDeps(config, {
    redisPrefix: `${env.redisPrefix}:`,
    logger: createLogger({ level: 'info', destination }),
  });
  api = {
    env,
    app: createApp(deps),
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
  admin = await createUser(api, 'admin');
}, 120_000);

afterAll(async () => {
  try {
    await api?.close();
  } finally {
    await pair?.destroy();
  }
});

const ready = async () => {
  const response = await call(api, 'get', '/ready');
  return { status: response.status, body: response.body as { status: string; checks: Record<string, string> } };
};

/** Waits until the API's checks have seen the standby holding everything written so far. */
async function replicaInStep(): Promise<void> {
  await pair!.caughtUp();
  await expect.poll(ready, { timeout: 10_000 }).toMatchObject({ status: 200, body: { status: 'ready' } });
}

async function metric(name: string, labels: string): Promise<number> {
  const text = (await call(api, 'get', '/metrics')).text;
  const line = text.split('\n').find((each) => each.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : Number.NaN;
}

const fallbacks = (reason: string) => metric('lms_db_replica_fallbacks_total', `reason="${reason}"`);

async function userIds(token: string): Promise<string[]> {
  const response = await call(api, 'get', '/api/v1/users?limit=100', { token });
  expect(response.status).toBe(200);
  return (response.body as { items: Array<{ id: string }> }).items.map((user) => user.id);
}

describe('a streaming read replica', () => {
  it('replay paused: the writer sees their enrolment, a new certificate verifies, and a replica past the lag limit is skipped', async () => {
    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor);
    const student = await createUser(api, 'student');
    await replicaInStep();
    await pair!.pauseReplay();

    // Written on the primary only: a reader who wrote nothing is served by the replica, which lacks it.
    const newcomer = await createUser(api, 'student');
    expect(await userIds(admin.token)).not.toContain(newcomer.id);

    const enrolled = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: student.token });
    expect(enrolled.status).toBe(201);
    const enrollmentId = (enrolled.body as { id: string }).id;
    const mine = await call(api, 'get', '/api/v1/enrollments', { token: student.token });
    expect((mine.body as { items: Array<{ id: string }> }).items.map((item) => item.id)).toEqual([enrollmentId]);

    // The worker issues the certificate (straight into the primary) and e-mails its code.
    await api.db.query(
      `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title)
       VALUES ($1, $2, $3, 'PAUS-ED00-0001', 'Test student', 'Paused')`,
      [enrollmentId, student.id, course.id],
    );
    const verified = await call(api, 'get', '/api/v1/certificates/verify/PAUS-ED00-0001');
    expect(verified.body).toMatchObject({ valid: true });

    // Past REPLICA_MAX_LAG_SECONDS: /ready says so (200), and every reader gets the primary.
    const lagging = await fallbacks('lagging');
    await expect.poll(ready, { timeout: (MAX_LAG_SECONDS + 5) * 1000, interval: 250 }).toEqual({
      status: 200,
      body: { status: 'degraded', checks: { database: 'ok', redis: 'ok', replica: 'lagging' } },
    });
    expect(await userIds(admin.token)).toContain(newcomer.id);
    expect(await fallbacks('lagging')).toBeGreaterThan(lagging);
    expect(
      await metric('lms_db_replica_lag_seconds', `server="127.0.0.1:${new URL(pair!.replicaUrl).port}"`),
    ).toBeGreaterThan(MAX_LAG_SECONDS);

    await pair!.resumeReplay();
    await replicaInStep();
    const caughtUp = await fallbacks('lagging');
    expect(await userIds(admin.token)).toContain(newcomer.id);
    expect(await fallbacks('lagging')).toBe(caughtUp);
    expect(logLines.filter((line) => /lags beyond REPLICA_MAX_LAG_SECONDS/.test(line.msg))).toHaveLength(1);
    expect(logLines.filter((line) => /caught up/.test(line.msg))).toHaveLength(1);
  });

  it('replica stopped: its reads are served by the primary and counted, logged once, /ready degraded 200; used again once back', async () => {
    await replicaInStep();
    const unavailable = await fallbacks('unavailable');
    const seen = logLines.length;
    const lines = () => logLines.slice(seen);
    const warnings = () => lines().filter((line) => line.level === 'warn' && /^read replica/.test(line.msg));
    await pair!.stopReplica();

    for (let read = 0; read < 3; read++) expect(await userIds(admin.token)).toContain(admin.id);
    expect(await fallbacks('unavailable')).toBe(unavailable + 3);
    expect(await ready()).toEqual({
      status: 200,
      body: { status: 'degraded', checks: { database: 'ok', redis: 'ok', replica: 'unavailable' } },
    });
    // Checks keep failing every second meanwhile: still the one warning.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(await userIds(admin.token)).toContain(admin.id);
    expect(warnings()).toHaveLength(1);

    await pair!.startReplica();
    await replicaInStep();
    expect(lines().filter((line) => /answers again/.test(line.msg))).toHaveLength(1);
    const back = await fallbacks('unavailable');
    expect(await userIds(admin.token)).toContain(admin.id);
    expect(await fallbacks('unavailable')).toBe(back);
  });
});
