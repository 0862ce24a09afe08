import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from './testing/test-app.js';

/**
 * Every route against every kind of caller: anonymous, the enrolled learner, another learner,
 * the course's instructor, another instructor, an admin. Denials are asserted as much as grants.
 */
type Actor = 'anon' | 'learner' | 'otherLearner' | 'owner' | 'otherInstructor' | 'admin';
const ACTORS: Actor[] = ['anon', 'learner', 'otherLearner', 'owner', 'otherInstructor', 'admin'];

let api: TestApi;
const users = {} as Record<Exclude<Actor, 'anon'>, TestUser>;
let course: { id: string; lessonIds: string[] };
/** A second course only the enrol case uses, so enrolling does not change who may take the quiz. */
let openCourse: { id: string };
let quizId: string;
let enrollmentId: string;
let certificateId: string;
let webhookId: string;

beforeAll(async () => {
  api = await createTestApi();
  users.learner = await createUser(api, 'student');
  users.otherLearner = await createUser(api, 'student');
  users.owner = await createUser(api, 'instructor');
  users.otherInstructor = await createUser(api, 'instructor');
  users.admin = await createUser(api, 'admin');
  course = await createCourse(api, users.owner, { lessons: 2 });
  openCourse = await createCourse(api, users.owner);
  enrollmentId = (await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: users.learner.token })).body
    .id as string;
  quizId = (
    await call(api, 'post', `/api/v1/courses/${course.id}/quizzes`, {
      token: users.owner.token,
      body: { title: 'Q', passMark: 50, questions: [{ prompt: 'p', options: ['a', 'b'], correctOption: 0 }] },
    })
  ).body.id as string;
  await api.db.query(
    `UPDATE enrollments SET status = 'completed', progress = 100, completed_at = now() WHERE id = $1`,
    [enrollmentId],
  );
  certificateId = (
    await api.db.query<{ id: string }>(
      `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title, pdf)
       VALUES ($1, $2, $3, 'AUTHZ-CODE-0001', 'L', 'C', '\\x25504446') RETURNING id`,
      [enrollmentId, users.learner.id, course.id],
    )
  ).rows[0]!.id;
  webhookId = (
    await call(api, 'post', '/api/v1/webhooks', {
      token: users.admin.token,
      body: { url: 'https://h.example/x', events: ['course.completed'] },
    })
  ).body.id as string;
});

afterAll(async () => {
  await api.close();
});

interface Case {
  name: string;
  request: (actor: Actor) => Promise<{ method: 'get' | 'post' | 'patch' | 'delete'; path: string; body?: unknown }>;
  expect: Record<Actor, number>;
}

const all = (status: number): Record<Actor, number> => ({
  anon: status,
  learner: status,
  otherLearner: status,
  owner: status,
  otherInstructor: status,
  admin: status,
});
const signedIn = (status: number): Record<Actor, number> => ({ ...all(status), anon: 401 });
const adminOnly = (status: number): Record<Actor, number> => ({ ...signedIn(403), admin: status });
const managers = (owner: number, otherInstructor = 403): Record<Actor, number> => ({
  anon: 401,
  learner: 403,
  otherLearner: 403,
  owner,
  otherInstructor,
  admin: owner,
});

const fixed = (method: 'get' | 'post' | 'patch' | 'delete', path: () => string, body?: unknown) => () =>
  Promise.resolve({ method, path: path(), body });

const CASES: Case[] = [
  { name: 'GET /users/me', request: fixed('get', () => '/api/v1/users/me'), expect: signedIn(200) },
  { name: 'GET /users', request: fixed('get', () => '/api/v1/users'), expect: adminOnly(200) },
  {
    name: 'PATCH /users/:id',
    request: fixed('patch', () => `/api/v1/users/${users.otherLearner.id}`, { active: true }),
    expect: adminOnly(200),
  },
  { name: 'GET /courses', request: fixed('get', () => '/api/v1/courses'), expect: all(200) },
  {
    name: 'POST /courses',
    request: fixed('post', () => '/api/v1/courses', { title: 'T' }),
    expect: managers(201, 201),
  },
  {
    name: 'GET /courses/:id (published)',
    request: fixed('get', () => `/api/v1/courses/${course.id}`),
    expect: all(200),
  },
  {
    name: 'GET /courses/:id (draft)',
    request: async () => ({
      method: 'get',
      path: `/api/v1/courses/${(await createCourse(api, users.owner, { published: false })).id}`,
    }),
    expect: { anon: 404, learner: 404, otherLearner: 404, owner: 200, otherInstructor: 404, admin: 200 },
  },
  {
    name: 'PATCH /courses/:id',
    request: fixed('patch', () => `/api/v1/courses/${course.id}`, { description: 'd' }),
    expect: managers(200),
  },
  {
    name: 'POST /courses/:id/publish',
    request: fixed('post', () => `/api/v1/courses/${course.id}/publish`),
    expect: managers(200),
  },
  {
    name: 'DELETE /courses/:id (draft, no enrolments)',
    request: async () => ({
      method: 'delete',
      path: `/api/v1/courses/${(await createCourse(api, users.owner, { published: false })).id}`,
    }),
    expect: managers(204, 404),
  },
  {
    name: 'GET /courses/:id/lessons',
    request: fixed('get', () => `/api/v1/courses/${course.id}/lessons`),
    expect: all(200),
  },
  {
    name: 'POST /courses/:id/lessons',
    request: fixed('post', () => `/api/v1/courses/${course.id}/lessons`, { title: 'L' }),
    expect: managers(201),
  },
  {
    name: 'POST /courses/:id/enroll',
    request: fixed('post', () => `/api/v1/courses/${openCourse.id}/enroll`),
    expect: signedIn(201),
  },
  { name: 'GET /enrollments', request: fixed('get', () => '/api/v1/enrollments'), expect: signedIn(200) },
  {
    name: 'POST /enrollments/:id/lessons/:lessonId/complete',
    request: fixed('post', () => `/api/v1/enrollments/${enrollmentId}/lessons/${course.lessonIds[0]}/complete`),
    expect: { ...signedIn(404), learner: 200 },
  },
  {
    name: 'POST /courses/:id/quizzes',
    request: fixed('post', () => `/api/v1/courses/${course.id}/quizzes`, {
      title: 'Q2',
      passMark: 1,
      questions: [{ prompt: 'p', options: ['a', 'b'], correctOption: 1 }],
    }),
    expect: managers(201),
  },
  {
    name: 'GET /courses/:id/quizzes',
    request: fixed('get', () => `/api/v1/courses/${course.id}/quizzes`),
    expect: all(200),
  },
  {
    name: 'GET /quizzes/:id',
    request: fixed('get', () => `/api/v1/quizzes/${quizId}`),
    expect: { ...signedIn(403), learner: 200, owner: 200, admin: 200 },
  },
  {
    name: 'POST /quizzes/:id/attempts',
    request: fixed('post', () => `/api/v1/quizzes/${quizId}/attempts`, { answers: [0] }),
    expect: { ...signedIn(403), learner: 201 },
  },
  { name: 'GET /certificates', request: fixed('get', () => '/api/v1/certificates'), expect: signedIn(200) },
  {
    name: 'GET /certificates/:id/pdf',
    request: fixed('get', () => `/api/v1/certificates/${certificateId}/pdf`),
    expect: { ...signedIn(404), learner: 200, admin: 200 },
  },
  {
    name: 'GET /certificates/verify/:code',
    request: fixed('get', () => '/api/v1/certificates/verify/AUTHZ-CODE-0001'),
    expect: all(200),
  },
  {
    name: 'POST /webhooks',
    request: fixed('post', () => '/api/v1/webhooks', { url: 'https://h.example/y', events: ['course.completed'] }),
    expect: adminOnly(201),
  },
  { name: 'GET /webhooks', request: fixed('get', () => '/api/v1/webhooks'), expect: adminOnly(200) },
  { name: 'GET /webhooks/:id', request: fixed('get', () => `/api/v1/webhooks/${webhookId}`), expect: adminOnly(200) },
  {
    name: 'PATCH /webhooks/:id',
    request: fixed('patch', () => `/api/v1/webhooks/${webhookId}`, { description: 'x' }),
    expect: adminOnly(200),
  },
  {
    name: 'GET /webhooks/:id/deliveries',
    request: fixed('get', () => `/api/v1/webhooks/${webhookId}/deliveries`),
    expect: adminOnly(200),
  },
  {
    name: 'DELETE /webhooks/:id',
    request: async () => ({
      method: 'delete',
      path: `/api/v1/webhooks/${(await call(api, 'post', '/api/v1/webhooks', { token: users.admin.token, body: { url: 'https://h.example/z', events: ['course.completed'] } })).body.id}`,
    }),
    expect: adminOnly(204),
  },
];

describe('authorization matrix', () => {
  it('grants and denies every route to every kind of caller as intended', async () => {
    const mismatches: string[] = [];
    for (const testCase of CASES) {
      for (const actor of ACTORS) {
        const { method, path, body } = await testCase.request(actor);
        const response = await call(api, method, path, {
          token: actor === 'anon' ? undefined : users[actor].token,
          body,
        });
        if (response.status !== testCase.expect[actor]) {
          mismatches.push(
            `${testCase.name} as ${actor}: ${response.status}, expected ${testCase.expect[actor]} (${JSON.stringify(response.body)})`,
          );
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('covers every route of the API', async () => {
    const document = (await call(api, 'get', '/api/v1/openapi.json')).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    const declared = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    const covered = new Set(
      CASES.map((testCase) =>
        testCase.name
          .split(' (')[0]!
          .replace(/:(\w+)/g, '{$1}')
          .replace(' /', ' /api/v1/'),
      ),
    );
    expect(declared.filter((route) => !covered.has(route))).toEqual([
      'POST /api/v1/auth/register',
      'POST /api/v1/auth/login',
      'POST /api/v1/auth/refresh',
      'POST /api/v1/auth/logout',
    ]);
  });
});
