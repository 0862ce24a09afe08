import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, defaultMigrationsDir, Migrator } from '@lms/core';
import { createTestDatabase, freePort, type TestDatabase } from '@lms/core/testing';
import { createApp } from '../../app.js';
import { closeDeps, createDeps, type Deps } from '../../deps.js';
import { call, createCourse, createTestApi, createUser, type TestApi } from '../../testing/test-app.js';

/**
 * Which reads the API sends where, against a "replica" that is as far behind as can be: a
 * database with the schema and none of the rows (whatever is read there is not found). The
 * behaviour of a real streaming replica (stopped, paused, lagging) is in src/read-replica.test.ts.
 */

let replica: TestDatabase;
let api: TestApi;
/** Further API processes on the same database, replica and Redis prefix. */
const others: Deps[] = [];

const ROUTING = {
  // Short, so the window can be seen closing within the test.
  REPLICA_READ_YOUR_WRITES_SECONDS: '2',
  REPLICA_CHECK_INTERVAL_SECONDS: '1',
};

/** Another API process of the same deployment (same Redis prefix), or with other settings. */
function anotherProcess(vars: Record<string, string> = {}) {
  const deps = createDeps(
    api.env.config({ DATABASE_READ_URL: replica.url, ...ROUTING, ...vars }) as TestApi['config'],
    {
      redisPrefix: api.deps.redisPrefix,
      logger: createLogger({ level: 'silent' }),
    },
  );
  others.push(deps);
  return createApp(deps);
}

const idsOf = (body: unknown) => (body as { items: Array<{ id: string }> }).items.map((item) => item.id);

beforeAll(async () => {
  replica = await createTestDatabase('replica');
  await new Migrator({ connectionString: replica.url, dir: defaultMigrationsDir }).up();
  api = await createTestApi({ DATABASE_READ_URL: replica.url, ...ROUTING });
  // Until its first check answers, the router sends nothing to the replica.
  expect(await api.deps.db.read.condition()).toMatchObject({ condition: 'ok' });
});

afterAll(async () => {
  for (const deps of others) await closeDeps(deps);
  await api.close();
  await replica.drop();
});

describe('with a read replica far behind', () => {
  it('reads that decide writes or fill the cache see the writes just made', async () => {
    const instructor = await createUser(api, 'instructor');
    const student = await createUser(api, 'student');
    const created = await call(api, 'post', '/api/v1/courses', {
      token: instructor.token,
      body: { title: 'Replication lag', description: 'Read your writes' },
    });
    expect(created.status).toBe(201);
    const id = (created.body as { id: string }).id;

    const steps = [
      await call(api, 'patch', `/api/v1/courses/${id}`, { token: instructor.token, body: { title: 'Lag, tamed' } }),
      await call(api, 'post', `/api/v1/courses/${id}/lessons`, {
        token: instructor.token,
        body: { title: 'One', body: 'First' },
      }),
      await call(api, 'post', `/api/v1/courses/${id}/publish`, { token: instructor.token }),
      await call(api, 'post', `/api/v1/courses/${id}/enroll`, { token: student.token }),
    ];
    expect(steps.map((step) => step.status)).toEqual([200, 201, 200, 201]);

    // Catalogue and course detail: the cache, filled from the primary.
    const detail = await call(api, 'get', `/api/v1/courses/${id}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ title: 'Lag, tamed', status: 'published' });
    expect(idsOf((await call(api, 'get', '/api/v1/courses')).body)).toContain(id);
  });

  it("sends a user's own lists to the primary after their write, in every process, until the window closes", async () => {
    const instructor = await createUser(api, 'instructor');
    const student = await createUser(api, 'student');
    const course = await createCourse(api, instructor);
    const otherProcess = anotherProcess();

    const enrolled = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: student.token });
    expect(enrolled.status).toBe(201);
    const enrollmentId = (enrolled.body as { id: string }).id;
    // Right after the write, here and in a process that did not see it: the primary.
    for (const app of [api.app, otherProcess]) {
      const mine = await call(app, 'get', '/api/v1/enrollments', { token: student.token });
      expect(idsOf(mine.body)).toEqual([enrollmentId]);
    }
    // The instructor wrote nothing through the API: their list is read on the replica, which has no rows.
    expect(idsOf((await call(api, 'get', '/api/v1/courses?mine=true', { token: instructor.token })).body)).toEqual([]);

    // Once the window has passed (and checks have seen the replica after the write), the replica again.
    await expect
      .poll(
        async () => idsOf((await call(otherProcess, 'get', '/api/v1/enrollments', { token: student.token })).body),
        {
          timeout: 8000,
          interval: 250,
        },
      )
      .toEqual([]);
  });

  it('sends every user to the primary while Redis cannot say who wrote', async () => {
    const student = await createUser(api, 'student');
    const course = await createCourse(api, await createUser(api, 'instructor'));
    const { rows } = await api.db.query<{ id: string }>(
      'INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2) RETURNING id',
      [student.id, course.id],
    );
    // A process whose Redis does not answer: no port listens there.
    const cut = anotherProcess({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    await expect
      .poll(async () => (await call(cut, 'get', '/ready')).body as unknown)
      .toMatchObject({ checks: { replica: 'ok' } });
    expect(idsOf((await call(cut, 'get', '/api/v1/enrollments', { token: student.token })).body)).toEqual([
      rows[0]!.id,
    ]);
    // With Redis, the same read (nobody wrote) is the replica's.
    expect(idsOf((await call(api, 'get', '/api/v1/enrollments', { token: student.token })).body)).toEqual([]);
  });

  it('verifies and lists certificates on the primary, always', async () => {
    const learner = await createUser(api, 'student', { name: 'Grace Hopper' });
    const course = await createCourse(api, await createUser(api, 'instructor'));
    const enrollment = await api.db.query<{ id: string }>(
      `INSERT INTO enrollments (user_id, course_id, status, progress, completed_at)
       VALUES ($1, $2, 'completed', 1, now()) RETURNING id`,
      [learner.id, course.id],
    );
    // As the worker issues it: no write of the learner's own comes before.
    await api.db.query(
      `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title)
       VALUES ($1, $2, $3, 'RPLC-0000-0001', 'Grace Hopper', 'Compilers')`,
      [enrollment.rows[0]!.id, learner.id, course.id],
    );
    const verified = await call(api, 'get', '/api/v1/certificates/verify/RPLC-0000-0001');
    expect(verified.body).toMatchObject({ valid: true, learnerName: 'Grace Hopper' });
    const mine = await call(api, 'get', '/api/v1/certificates', { token: learner.token });
    expect((mine.body as { items: Array<{ code: string }> }).items.map((item) => item.code)).toEqual([
      'RPLC-0000-0001',
    ]);
  });
});
