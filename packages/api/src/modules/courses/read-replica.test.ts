import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir, Migrator } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { call, createTestApi, createUser, type TestApi } from '../../testing/test-app.js';

// A replica far behind: the schema, none of the rows. Whatever the API reads there, it does not see.
let replica: TestDatabase;
let api: TestApi;

beforeAll(async () => {
  replica = await createTestDatabase('replica');
  await new Migrator({ connectionString: replica.url, dir: defaultMigrationsDir }).up();
  api = await createTestApi({ DATABASE_READ_URL: replica.url });
});

afterAll(async () => {
  await api.close();
  await replica.drop();
});

describe('with a lagging read replica', () => {
  it('reads that decide writes or fill the cache see the writes just made; uncached lists come from the replica', async () => {
    const [instructor, student] = [await createUser(api, 'instructor'), await createUser(api, 'student')];
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

    const detail = await call(api, 'get', `/api/v1/courses/${id}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ title: 'Lag, tamed', status: 'published' });
    const catalogue = await call(api, 'get', '/api/v1/courses');
    expect((catalogue.body as { items: Array<{ id: string }> }).items.map((course) => course.id)).toContain(id);

    // The instructor's own list is not cached and may lag: it is read from the replica.
    const mine = await call(api, 'get', '/api/v1/courses?mine=true', { token: instructor.token });
    expect(mine.status).toBe(200);
    expect((mine.body as { items: unknown[] }).items).toEqual([]);
  });
});
