import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@lms/core';
import { createApp } from '../../app.js';
import { closeDeps, createDeps } from '../../deps.js';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';

let api: TestApi;
let instructor: TestUser;
let other: TestUser;
let admin: TestUser;
let student: TestUser;

beforeAll(async () => {
  api = await createTestApi();
  [instructor, other, admin, student] = await Promise.all([
    createUser(api, 'instructor'),
    createUser(api, 'instructor'),
    createUser(api, 'admin'),
    createUser(api, 'student'),
  ]);
});

afterAll(async () => {
  await api.close();
});

async function cacheCount(cache: string, result: string): Promise<number> {
  const metric = await api.deps.metrics.cacheRequests.get();
  return metric.values.find((value) => value.labels.cache === cache && value.labels.result === result)?.value ?? 0;
}

describe('course lifecycle', () => {
  it('create → add lessons → publish → list → get → patch → delete', async () => {
    const created = await call(api, 'post', '/api/v1/courses', {
      token: instructor.token,
      body: { title: 'SQL for humans', description: 'Joins, gently' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      title: 'SQL for humans',
      description: 'Joins, gently',
      status: 'draft',
      instructorId: instructor.id,
    });
    const id = created.body.id as string;

    const early = await call(api, 'post', `/api/v1/courses/${id}/publish`, { token: instructor.token });
    expect(early.status).toBe(409);
    expect(early.body.error.message).toBe('add at least one lesson before publishing');

    const lesson1 = await call(api, 'post', `/api/v1/courses/${id}/lessons`, {
      token: instructor.token,
      body: { title: 'SELECT', body: 'Start here' },
    });
    const lesson2 = await call(api, 'post', `/api/v1/courses/${id}/lessons`, {
      token: instructor.token,
      body: { title: 'JOIN' },
    });
    expect([lesson1.status, lesson2.status]).toEqual([201, 201]);
    expect([lesson1.body.position, lesson2.body.position]).toEqual([1, 2]);

    // A draft is invisible to everyone but its instructor and admins.
    expect((await call(api, 'get', `/api/v1/courses/${id}`)).status).toBe(404);
    expect((await call(api, 'get', `/api/v1/courses/${id}`, { token: other.token })).status).toBe(404);
    expect((await call(api, 'get', `/api/v1/courses/${id}`, { token: admin.token })).status).toBe(200);

    const published = await call(api, 'post', `/api/v1/courses/${id}/publish`, { token: instructor.token });
    expect(published.status).toBe(200);
    expect(published.body).toMatchObject({ status: 'published', publishedAt: expect.any(String) });

    const catalogue = await call(api, 'get', '/api/v1/courses');
    expect(catalogue.body.items.map((course: { id: string }) => course.id)).toContain(id);
    expect((await call(api, 'get', `/api/v1/courses/${id}`)).body.title).toBe('SQL for humans');

    const patched = await call(api, 'patch', `/api/v1/courses/${id}`, {
      token: instructor.token,
      body: { title: 'SQL for everyone' },
    });
    expect(patched.body.title).toBe('SQL for everyone');
    // The cache was invalidated: the next read shows the change.
    expect((await call(api, 'get', `/api/v1/courses/${id}`)).body.title).toBe('SQL for everyone');
    expect(
      (await call(api, 'get', '/api/v1/courses')).body.items.find((course: { id: string }) => course.id === id).title,
    ).toBe('SQL for everyone');

    const audit = await api.db.query(`SELECT action FROM audit_log WHERE entity_id = $1`, [id]);
    expect(audit.rows).toEqual([{ action: 'course.published' }]);

    expect((await call(api, 'delete', `/api/v1/courses/${id}`, { token: instructor.token })).status).toBe(204);
    expect((await call(api, 'get', `/api/v1/courses/${id}`)).status).toBe(404);
  });

  it('only the instructor or an admin changes a course', async () => {
    const course = await createCourse(api, instructor);
    expect(
      (await call(api, 'patch', `/api/v1/courses/${course.id}`, { token: other.token, body: { title: 'Mine now' } }))
        .status,
    ).toBe(403);
    expect(
      (await call(api, 'patch', `/api/v1/courses/${course.id}`, { token: student.token, body: { title: 'Mine now' } }))
        .status,
    ).toBe(403);
    expect(
      (await call(api, 'post', `/api/v1/courses/${course.id}/lessons`, { token: other.token, body: { title: 'x' } }))
        .status,
    ).toBe(403);
    expect(
      (await call(api, 'patch', `/api/v1/courses/${course.id}`, { token: admin.token, body: { title: 'Admin edit' } }))
        .status,
    ).toBe(200);
    expect((await call(api, 'post', '/api/v1/courses', { token: student.token, body: { title: 'Nope' } })).status).toBe(
      403,
    );
  });

  it('an instructor cannot delete a course with enrolments; an admin can', async () => {
    const course = await createCourse(api, instructor);
    expect((await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: student.token })).status).toBe(201);
    const refused = await call(api, 'delete', `/api/v1/courses/${course.id}`, { token: instructor.token });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toBe('1 learner(s) are enrolled; only an admin can delete this course');
    expect((await call(api, 'delete', `/api/v1/courses/${course.id}`, { token: admin.token })).status).toBe(204);
  });

  it('lists published courses page by page with a cursor, and mine=true lists drafts of the caller', async () => {
    const mine = await createUser(api, 'instructor');
    const ids: string[] = [];
    for (let index = 0; index < 5; index++) ids.push((await createCourse(api, mine, { title: `Paged ${index}` })).id);
    const draft = await createCourse(api, mine, { published: false });

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await call(api, 'get', `/api/v1/courses?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(response.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...response.body.items.map((course: { id: string }) => course.id));
      cursor = response.body.nextCursor as string | null;
    } while (cursor);
    for (const id of ids) expect(seen).toContain(id);
    expect(seen).not.toContain(draft.id);
    expect(new Set(seen).size).toBe(seen.length);

    const own = await call(api, 'get', '/api/v1/courses?mine=true&limit=100', { token: mine.token });
    const ownIds = own.body.items.map((course: { id: string }) => course.id);
    expect([...ownIds].sort()).toEqual([...ids, draft.id].sort());
    const ownPaged: string[] = [];
    let ownCursor: string | null = null;
    do {
      const response = await call(
        api,
        'get',
        `/api/v1/courses?mine=true&limit=4${ownCursor ? `&cursor=${ownCursor}` : ''}`,
        {
          token: mine.token,
        },
      );
      ownPaged.push(...response.body.items.map((course: { id: string }) => course.id));
      ownCursor = response.body.nextCursor as string | null;
    } while (ownCursor);
    expect(ownPaged).toEqual(ownIds);
    expect((await call(api, 'get', '/api/v1/courses?mine=true')).status).toBe(403);
    expect((await call(api, 'get', '/api/v1/courses?cursor=bogus')).status).toBe(400);
    expect((await call(api, 'get', '/api/v1/courses?limit=101')).status).toBe(400);
  });

  it('pages through courses that share a creation time (made in one statement) without skipping any', async () => {
    const instructor = await createUser(api, 'instructor');
    const { rows } = await api.db.query<{ id: string }>(
      `INSERT INTO courses (instructor_id, title) SELECT $1, 'Batch ' || n FROM generate_series(1, 5) AS n RETURNING id`,
      [instructor.id],
    );
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await call(api, 'get', `/api/v1/courses?mine=true&limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        token: instructor.token,
      });
      seen.push(...response.body.items.map((course: { id: string }) => course.id));
      cursor = response.body.nextCursor as string | null;
    } while (cursor);
    expect(seen).toEqual(
      rows
        .map((row) => row.id)
        .sort()
        .reverse(),
    );
  });

  it('serves a published course and the catalogue from the cache', async () => {
    const course = await createCourse(api, instructor);
    const hitsBefore = (await cacheCount('course', 'hit')) + (await cacheCount('course', 'local_hit'));
    await call(api, 'get', `/api/v1/courses/${course.id}`);
    await call(api, 'get', `/api/v1/courses/${course.id}`);
    expect((await cacheCount('course', 'hit')) + (await cacheCount('course', 'local_hit'))).toBe(hitsBefore + 1);
    const catalogueHits = (await cacheCount('catalogue', 'hit')) + (await cacheCount('catalogue', 'local_hit'));
    await call(api, 'get', '/api/v1/courses?limit=7');
    await call(api, 'get', '/api/v1/courses?limit=7');
    expect((await cacheCount('catalogue', 'hit')) + (await cacheCount('catalogue', 'local_hit'))).toBe(
      catalogueHits + 1,
    );
  });

  it('a change made through one API process is seen at once through another (cache invalidation)', async () => {
    const other = createDeps(api.config, {
      redisPrefix: api.deps.redisPrefix,
      logger: createLogger({ level: 'silent' }),
    });
    const otherApp = createApp(other);
    try {
      if (other.subscriber.status !== 'ready') await once(other.subscriber, 'ready');
      const course = await createCourse(api, instructor, { title: 'Before' });
      // Both processes have the course in their caches.
      expect((await call(otherApp, 'get', `/api/v1/courses/${course.id}`)).body.title).toBe('Before');
      expect((await call(api, 'get', `/api/v1/courses/${course.id}`)).body.title).toBe('Before');
      expect(
        (await call(otherApp, 'get', '/api/v1/courses?limit=100')).body.items.some(
          (c: { title: string }) => c.title === 'Before',
        ),
      ).toBe(true);
      await call(api, 'patch', `/api/v1/courses/${course.id}`, { token: instructor.token, body: { title: 'After' } });
      let seen = '';
      for (let waited = 0; seen !== 'After' && waited < 2000; waited += 20) {
        seen = (await call(otherApp, 'get', `/api/v1/courses/${course.id}`)).body.title as string;
        if (seen !== 'After') await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(seen).toBe('After');
      const titles = (await call(otherApp, 'get', '/api/v1/courses?limit=100')).body.items.map(
        (c: { title: string }) => c.title,
      );
      expect(titles).toContain('After');
      expect(titles).not.toContain('Before');
    } finally {
      await closeDeps(other);
    }
  });

  it('shows lesson bodies only to enrolled learners, the instructor and admins', async () => {
    const course = await createCourse(api, instructor, { lessons: 2 });
    const anonymous = await call(api, 'get', `/api/v1/courses/${course.id}/lessons`);
    expect(anonymous.body.items.map((lesson: { body: string | null }) => lesson.body)).toEqual([null, null]);
    expect(
      (await call(api, 'get', `/api/v1/courses/${course.id}/lessons`, { token: instructor.token })).body.items[0].body,
    ).toBe('Body');
    const learner = await createUser(api, 'student');
    await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token });
    expect(
      (await call(api, 'get', `/api/v1/courses/${course.id}/lessons`, { token: learner.token })).body.items[1].body,
    ).toBe('Body');
  });
});
