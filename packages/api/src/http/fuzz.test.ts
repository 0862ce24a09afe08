import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@lms/core';
import { createApp } from '../app.js';
import { closeDeps, createDeps, type Deps } from '../deps.js';
import { encodeCursor } from '../lib/pagination.js';
import {
  call,
  createCourse,
  createTestApi,
  createUser,
  LEAKS,
  TEST_PASSWORD,
  type TestApi,
  type TestUser,
} from '../testing/test-app.js';

/**
 * Drives every operation of the OpenAPI document the app serves with generated requests, valid
 * and hostile (wrong types, NUL, lone surrogates, huge strings, forged cursors, broken
 * percent-encoding, bodies that are not JSON), as each role, and checks that nothing answers 5xx,
 * that every error is the JSON error shape, and that nothing is logged at error level or echoes
 * the input. On a failure fast-check prints the seed and path; replay one with
 * `FUZZ_SEED=<seed> FUZZ_PATH=<path>` (the operation is named in the failure).
 */

const REQUESTS = 2_000;
/** Put into hostile strings: it must never turn up in a log line (outside the logged path). */
const MARKER = 'fuzz-echo-7f3a';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
}

interface Parameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  schema: JsonSchema;
}

interface Operation {
  method: string;
  path: string;
  parameters: Parameter[];
  body: JsonSchema | null;
}

type Role = 'anonymous' | 'student' | 'instructor' | 'admin';
const ROLES: readonly Role[] = ['anonymous', 'student', 'instructor', 'admin'];

interface FuzzRequest {
  role: Role;
  path: string;
  query: string;
  body: { contentType: string; data: Buffer } | null;
}

/** What the generators draw valid values from: rows this test made. */
interface Fixtures {
  ids: string[];
  /** The ids by the collection a path names them under (`/courses/{id}`: courses; `{lessonId}`: lessons). */
  idsOf: Record<string, string[]>;
  certificateCode: string;
  refreshToken: string;
  cursors: string[];
}

let api: TestApi;
let deps: Deps;
let server: http.Server;
let agent: http.Agent;
let users: Record<Exclude<Role, 'anonymous'>, TestUser>;
let fixtures: Fixtures;
const logLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  api = await createTestApi();
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
      logLines.push(JSON.parse(line) as Record<string, unknown>);
  });
  // The app under fuzz logs to this test; its Redis keys live under the test app's prefix.
  deps = createDeps(api.config, {
    redisPrefix: `${api.env.redisPrefix}:fuzz:`,
    logger: createLogger({ level: 'info', destination: stream }),
  });
  const app = createApp(deps);
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

  users = {
    student: await createUser(api, 'student'),
    instructor: await createUser(api, 'instructor'),
    admin: await createUser(api, 'admin'),
  };
  fixtures = await createFixtures();
});

afterAll(async () => {
  agent?.destroy();
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  if (deps) await closeDeps(deps);
  await api?.close();
});

/** Courses, lessons, an enrolment, a quiz, a webhook, a certificate, other users and a session to aim at. */
async function createFixtures(): Promise<Fixtures> {
  const { instructor, student, admin } = users;
  const published = await createCourse(api, instructor, { lessons: 3 });
  const other = await createCourse(api, instructor, { lessons: 1 });
  const draft = await createCourse(api, instructor, { published: false, lessons: 1 });
  const enrolment = await call(api, 'post', `/api/v1/courses/${published.id}/enroll`, { token: student.token });
  expect(enrolment.status).toBeLessThan(300);
  await call(api, 'post', `/api/v1/courses/${other.id}/enroll`, { token: student.token });
  const quiz = await call(api, 'post', `/api/v1/courses/${published.id}/quizzes`, {
    token: instructor.token,
    body: { title: 'Quiz', passMark: 50, questions: [{ prompt: 'Two?', options: ['1', '2'], correctOption: 1 }] },
  });
  expect(quiz.status).toBe(201);
  const webhook = await call(api, 'post', '/api/v1/webhooks', {
    token: admin.token,
    body: { url: 'https://hooks.example.com/lms', events: ['enrollment.created'] },
  });
  expect(webhook.status).toBe(201);
  const certificateCode = 'FUZZ-0000-0001';
  const certificate = await api.db.query<{ id: string }>(
    `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title, pdf)
     VALUES ($1, $2, $3, $4, 'Test student', 'Course', $5) RETURNING id`,
    [enrolment.body.id, student.id, published.id, certificateCode, Buffer.from('%PDF-1.4 fuzz')],
  );
  // Other people's accounts and a session of theirs, so the fuzz never locks its own callers out.
  const victims = [await createUser(api, 'student'), await createUser(api, 'instructor')];
  const login = await call(api, 'post', '/api/v1/auth/login', {
    body: { email: victims[0]!.email, password: TEST_PASSWORD },
  });
  expect(login.status).toBe(200);
  const idsOf: Record<string, string[]> = {
    courses: [published.id, other.id, draft.id],
    lessons: [...published.lessonIds, ...other.lessonIds, ...draft.lessonIds],
    enrollments: [enrolment.body.id as string],
    quizzes: [quiz.body.id as string],
    webhooks: [webhook.body.id as string],
    certificates: [certificate.rows[0]!.id],
    users: victims.map((victim) => victim.id),
  };
  const ids = Object.values(idsOf).flat();
  const cursors = [encodeCursor({ at: '2026-01-01T00:00:00.000000Z', id: published.id })];
  for (const [path, token] of [
    ['/api/v1/courses?limit=1', undefined],
    ['/api/v1/users?limit=1', admin.token],
    ['/api/v1/enrollments?limit=1', student.token],
  ] as const) {
    const page = await call(api, 'get', path, token ? { token } : {});
    if (typeof page.body.nextCursor === 'string') cursors.push(page.body.nextCursor);
  }
  return { ids, idsOf, certificateCode, refreshToken: login.body.refreshToken as string, cursors };
}

function tokenOf(role: Role): string | null {
  return role === 'anonymous' ? null : users[role].token;
}

/** Percent-encodes every code point's UTF-8 bytes, a lone surrogate as its WTF-8 bytes (invalid UTF-8). */
function percentEncode(value: string): string {
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) {
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)]
        .map((byte) => `%${byte.toString(16).toUpperCase()}`)
        .join('');
    } else out += encodeURIComponent(char);
  }
  return out;
}

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));

/** Strings a careless or hostile client sends: NUL, lone surrogates, control characters, huge ones. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.string(), fc.string()).map(([a, b]) => `${a}\u0000${MARKER}${b}`),
  fc.tuple(fc.string(), loneSurrogate, fc.string()).map(([a, s, b]) => `${a}${s}${MARKER}${b}`),
  fc.string({ unit: 'binary', maxLength: 40 }).map((value) => `${value}${MARKER}`),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.constantFrom('', ' ', '\t\n', 'null', '0', '-1', '1e999', '%00', "' OR '1'='1", '../../etc/passwd', '😀'),
  fc.constantFrom(5_000, 40_000, 90_000).map((length) => `${MARKER}${'a'.repeat(length)}`),
  fc.constantFrom(20_000, 45_000).map((length) => 'é'.repeat(length)),
);

/** Hostile strings short enough for a URL (past 16 kB of headers Node itself answers 431). */
const shortHostileString = hostileString.filter((value) => value.length < 300);

/** Any JSON value, for a field of the wrong type. */
const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, -0, 1e308, 2 ** 53, [], {}, '', [null], { $gt: '' }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** A value the schema accepts (mostly: string hints by field name aim at what the service needs). */
function validValue(schema: JsonSchema, name: string, depth: number, mutate: boolean): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((option) => valueOf(option, name, depth, mutate)));
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'string':
      return validString(schema, name);
    case 'integer':
      // Indexes into a question's options (at least 2 of them): small, so that most are valid.
      if (name === 'correctOption' || name === 'answers') return fc.integer({ min: 0, max: 2 });
      return fc.integer({ min: schema.minimum ?? -1_000, max: Math.min(schema.maximum ?? 1_000, 1_000) });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(valueOf(schema.items ?? {}, name, depth + 1, mutate), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 4, 4),
      });
    case 'object': {
      const properties = Object.entries(schema.properties ?? {});
      const required = new Set(schema.required ?? []);
      return fc.record(
        Object.fromEntries(properties.map(([key, property]) => [key, valueOf(property, key, depth + 1, mutate)])),
        { requiredKeys: properties.map(([key]) => key).filter((key) => required.has(key)) },
      );
    }
    default:
      return fc.jsonValue({ maxDepth: 1 });
  }
}

function validString(schema: JsonSchema, name: string): fc.Arbitrary<string> {
  if (schema.format === 'uuid') return fc.oneof(fc.constantFrom(...fixtures.ids), fc.uuid());
  if (name === 'email') return fc.oneof(fc.emailAddress(), fc.constant(users.student.email));
  if (name === 'url') return fc.oneof(fc.webUrl(), fc.constant('https://hooks.example.com/x'));
  if (name === 'refreshToken') return fc.oneof(fc.constant(fixtures.refreshToken), fc.base64String({ minLength: 20 }));
  if (name === 'password') return fc.oneof(fc.constant(TEST_PASSWORD), fc.string({ minLength: 10, maxLength: 30 }));
  if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern));
  const minLength = schema.minLength ?? 0;
  return fc.string({
    unit: 'grapheme',
    minLength,
    maxLength: Math.max(minLength, Math.min(schema.maxLength ?? 40, 40)),
  });
}

/** A value for a schema; with `mutate`, at any depth sometimes hostile or of the wrong type. */
function valueOf(schema: JsonSchema, name: string, depth: number, mutate: boolean): fc.Arbitrary<unknown> {
  if (depth > 4) return validValue({ ...schema, type: 'string' }, name, depth, mutate);
  if (!mutate) return validValue(schema, name, depth, mutate);
  const hostile: fc.Arbitrary<unknown> =
    schema.type === 'array'
      ? fc.oneof(wrongType, fc.array(fc.constant(0), { minLength: 101, maxLength: 120 }))
      : schema.type === 'object'
        ? fc.oneof(
            wrongType,
            fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor')), fc.jsonValue()),
          )
        : fc.oneof(hostileString, wrongType);
  return fc.oneof({ weight: 5, arbitrary: validValue(schema, name, depth, mutate) }, { weight: 1, arbitrary: hostile });
}

/** A request body: JSON from the schema (mutated), or bytes that are not JSON at all. */
function bodyOf(schema: JsonSchema): fc.Arbitrary<FuzzRequest['body']> {
  const json = (contentType: string) => (value: unknown) => ({
    contentType,
    data: Buffer.from(JSON.stringify(value) ?? 'null'),
  });
  return fc.oneof(
    // Valid bodies reach the services and SQL; mutated ones test the schemas.
    { weight: 6, arbitrary: valueOf(schema, 'body', 0, false).map(json('application/json')) },
    { weight: 6, arbitrary: valueOf(schema, 'body', 0, true).map(json('application/json')) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom('', 'null', '[]', '{', '"text"', '{"a":', '\u0000', '1', '{"__proto__":{"admin":true}}')
        .map((text) => ({ contentType: 'application/json', data: Buffer.from(text) })),
    },
    {
      weight: 1,
      arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({
        contentType: 'application/json',
        data: Buffer.from(bytes),
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(
            'text/plain',
            'application/x-www-form-urlencoded',
            'application/json; charset=latin1',
            'application/json; charset=utf-16',
            'multipart/form-data; boundary=x',
          ),
          validValue(schema, 'body', 0, false),
        )
        .map(([contentType, value]) => json(contentType)(value)),
    },
    {
      weight: 1,
      arbitrary: fc.constant({ contentType: 'application/json', data: Buffer.from(`"${'a'.repeat(110_000)}"`) }),
    },
    { weight: 1, arbitrary: fc.constant(null) },
  );
}

/** Cursors: real ones, well-formed forgeries (the wrong dates and ids PostgreSQL would refuse), garbage. */
function forgedCursor(): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.oneof(
        fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
        fc.constantFrom(
          '2020',
          'Tue, 01 Jan 2030 00:00:00 GMT',
          '+275760-09-13T00:00:00.000Z',
          '-000001-01-01T00:00:00Z',
          '2021-02-29T00:00:00.000000Z',
          '2021-04-31T00:00:00Z',
          '2021-01-01T24:00:00Z',
          '2021-01-01T23:60:00Z',
          '0000-01-01T00:00:00Z',
          '2021-01-01T00:00:00.1234567Z',
          '2021-01-01 00:00:00',
          '12/31/2020',
        ),
        wrongType,
        shortHostileString,
      ),
      fc.oneof(
        fc.constantFrom(...fixtures.ids),
        fc.uuid(),
        fc.stringMatching(/^[0-9a-f]{36}$/),
        fc.stringMatching(/^[0-9a-fA-F-]{36}$/),
        wrongType,
        shortHostileString,
      ),
    )
    .map(([at, id]) => Buffer.from(JSON.stringify([at, id])).toString('base64url'));
}

const garbageCursor: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.base64String(),
  fc.jsonValue().map((value) => Buffer.from(JSON.stringify(value) ?? 'null').toString('base64url')),
  fc.uint8Array({ maxLength: 80 }).map((bytes) => Buffer.from(bytes).toString('base64url')),
);

/** A path or query value that is not well-formed: broken escapes, encoded NUL and surrogates, other ids. */
const hostileSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '%',
    '%f',
    '%zz',
    '%ff',
    '%FF%FE',
    '%c0%af',
    '%ed%a0%80',
    '%e2%82',
    '%00',
    '%2e%2e',
    '%2F',
    '..',
    '.',
  ),
  fc
    .uint8Array({ minLength: 1, maxLength: 12 })
    .map((bytes) => [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')),
  shortHostileString.map(percentEncode),
  fc.string({ unit: 'grapheme', maxLength: 40 }).map(percentEncode),
);

function parameterValue(parameter: Parameter, ids: string[] = fixtures.ids): fc.Arbitrary<string> {
  const { name, schema } = parameter;
  let valid: fc.Arbitrary<string>;
  if (schema.format === 'uuid') valid = fc.oneof(fc.constantFrom(...ids), fc.constantFrom(...fixtures.ids));
  else if (name === 'cursor') valid = fc.oneof(fc.constantFrom(...fixtures.cursors), forgedCursor(), garbageCursor);
  else if (name === 'code')
    valid = fc.oneof(fc.constant(fixtures.certificateCode), fc.stringMatching(/^[A-Z0-9-]{1,64}$/));
  else
    valid = validValue(schema, name, 0, false).map((value) =>
      typeof value === 'string' ? value : JSON.stringify(value),
    );
  return fc.oneof(
    { weight: 4, arbitrary: valid.map(percentEncode) },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: hostileSegment },
  );
}

function queryOf(parameters: Parameter[]): fc.Arbitrary<string> {
  const query = parameters.filter((parameter) => parameter.in === 'query');
  if (!query.length) return fc.constantFrom('', `?${MARKER}=%00`);
  return fc
    .tuple(
      ...query.map((parameter) =>
        fc.option(
          fc.oneof(
            { weight: 5, arbitrary: parameterValue(parameter).map((value) => [`${parameter.name}=${value}`]) },
            // A parameter repeated: Express reads it as an array.
            {
              weight: 1,
              arbitrary: fc
                .array(parameterValue(parameter), { minLength: 2, maxLength: 3 })
                .map((values) => values.map((value) => `${parameter.name}=${value}`)),
            },
          ),
        ),
      ),
    )
    .map((parts) => {
      const pairs = parts.flatMap((part) => part ?? []);
      return pairs.length ? `?${pairs.join('&')}` : '';
    });
}

/** The fixture ids a path parameter names: `lessonId` lessons, else the collection before it (`/quizzes/{id}`). */
function idsFor(path: string, name: string): string[] {
  if (name === 'lessonId') return fixtures.idsOf.lessons!;
  const collection = /\/([a-z]+)\/\{[A-Za-z]+\}$/.exec(path.slice(0, path.indexOf(`{${name}}`) + name.length + 2))?.[1];
  return (collection && fixtures.idsOf[collection]) || fixtures.ids;
}

function requestOf(operation: Operation): fc.Arbitrary<FuzzRequest> {
  const pathParameters = operation.parameters.filter((parameter) => parameter.in === 'path');
  const path = fc
    .tuple(...pathParameters.map((parameter) => parameterValue(parameter, idsFor(operation.path, parameter.name))))
    .map((values) =>
      pathParameters.reduce(
        (built, parameter, index) => built.replace(`{${parameter.name}}`, values[index]!),
        operation.path,
      ),
    );
  return fc.record({
    role: fc.constantFrom(...ROLES),
    path: pathParameters.length ? path : fc.constant(operation.path),
    query: queryOf(operation.parameters),
    body: operation.body ? bodyOf(operation.body) : fc.constant(null),
  });
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
  requestId: string;
}

function send(method: string, request: FuzzRequest): Promise<Answer> {
  const { port } = server.address() as AddressInfo;
  const token = tokenOf(request.role);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (request.body) {
    headers['content-type'] = request.body.contentType;
    headers['content-length'] = String(request.body.data.length);
  }
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: '127.0.0.1',
        port,
        agent,
        method: method.toUpperCase(),
        path: `${request.path}${request.query}`,
        headers,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type'] ?? '',
            requestId: String(response.headers['x-request-id']),
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body?.data);
  });
}

function operationsOf(document: { paths: Record<string, Record<string, Record<string, unknown>>> }): Operation[] {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => {
      const content = (operation.requestBody as { content?: Record<string, { schema: JsonSchema }> } | undefined)
        ?.content;
      return {
        method,
        path,
        parameters: (operation.parameters as Parameter[] | undefined) ?? [],
        body: content?.['application/json']?.schema ?? null,
      };
    }),
  );
}

function replay(): { seed?: number; path?: string } {
  const seed = process.env.FUZZ_SEED;
  return seed ? { seed: Number(seed), ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}) } : {};
}

describe('every route under generated input', () => {
  it(`answers below 500, with a JSON error body for every error, over at least ${REQUESTS} requests`, async () => {
    const document = (await call(api, 'get', '/api/v1/openapi.json')).body as Parameters<typeof operationsOf>[0];
    // Deletions last, so the rows they remove are there for every other operation first.
    const operations = operationsOf(document).sort(
      (a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'),
    );
    expect(operations.length).toBeGreaterThanOrEqual(30);
    const runs = Math.ceil(REQUESTS / operations.length);
    const counts = new Map<string, number>();
    for (const operation of operations) {
      const name = `${operation.method.toUpperCase()} ${operation.path}`;
      const property = fc.asyncProperty(requestOf(operation), async (request) => {
        const answer = await send(operation.method, request);
        counts.set(name, (counts.get(name) ?? 0) + 1);
        const label = `${name} as ${request.role}: ${answer.status} ${answer.text.slice(0, 300)}`;
        expect(answer.status, label).toBeLessThan(500);
        expect(answer.text, label).not.toMatch(LEAKS);
        if (answer.status >= 400) {
          expect(answer.contentType, label).toMatch(/^application\/json/);
          const body = JSON.parse(answer.text) as { error?: { code?: unknown; message?: unknown } };
          expect(typeof body.error?.code, label).toBe('string');
          expect(typeof body.error?.message, label).toBe('string');
        }
      });
      try {
        await fc.assert(property, { numRuns: runs, ...replay() });
      } catch (error) {
        throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
      }
    }
    const total = [...counts.values()].reduce((sum, count) => sum + count, 0);
    expect(total).toBeGreaterThanOrEqual(REQUESTS);
    expect(counts.size).toBe(operations.length);

    // Client errors are the client's business: nothing at error level, and no input in a message or field.
    await new Promise((resolve) => setImmediate(resolve));
    const errors = logLines.filter((line) => typeof line.level === 'string' && ['error', 'fatal'].includes(line.level));
    expect(errors.map((line) => line.msg)).toEqual([]);
    const echoed = logLines.filter((line) => {
      const { req, ...rest } = line as { req?: Record<string, unknown> };
      const { path: _path, ...request } = req ?? {};
      return JSON.stringify({ ...rest, req: request }).includes(MARKER);
    });
    expect(echoed).toEqual([]);
  }, 180_000);
});

/** The log lines of one request, with the path (logged as sent) left out. */
function logLinesOf(requestId: string): Array<Record<string, unknown>> {
  return logLines
    .filter((line) => (line.req as { id?: string } | undefined)?.id === requestId || line.requestId === requestId)
    .map((line) => {
      const { req, ...rest } = line as { req?: Record<string, unknown> };
      const { path: _path, ...request } = req ?? {};
      return { ...rest, req: request };
    });
}

describe('the inputs that answered 500 before', () => {
  const json = (value: unknown) => ({ contentType: 'application/json', data: Buffer.from(JSON.stringify(value)) });
  const quiz = (option: string) =>
    json({
      title: 'Quiz',
      passMark: 50,
      questions: [{ prompt: 'Which?', options: ['one', option], correctOption: 0 }],
    });

  it('answer 400 naming what is wrong, logged at info without the input', async () => {
    const courseId = fixtures.ids[0]!;
    const cases: Array<{ method: string; request: FuzzRequest; code: string; message: string }> = [
      {
        method: 'get',
        request: { role: 'anonymous', path: `/api/v1/courses/%ff${MARKER}`, query: '', body: null },
        code: 'malformed_path',
        message: 'the request path is not valid percent-encoded UTF-8',
      },
      ...[
        ['2020', courseId],
        ['Tue, 01 Jan 2030 00:00:00 GMT', courseId],
        ['2021-02-29T00:00:00Z', courseId],
        ['2021-01-01T00:00:00Z', 'a'.repeat(36)],
      ].map((cursor) => ({
        method: 'get',
        request: {
          role: 'anonymous' as const,
          path: '/api/v1/courses',
          query: `?cursor=${Buffer.from(JSON.stringify([...cursor, MARKER])).toString('base64url')}`,
          body: null,
        },
        code: 'validation_error',
        message: 'cursor: not a cursor this API returned; start again without it',
      })),
      {
        method: 'post',
        request: { role: 'instructor', path: '/api/v1/courses', query: '', body: json({ title: `a\u0000${MARKER}` }) },
        code: 'validation_error',
        message: 'title: must not contain NUL characters',
      },
      {
        method: 'post',
        request: {
          role: 'anonymous',
          path: '/api/v1/auth/register',
          query: '',
          body: json({ email: 'nul@example.com', password: TEST_PASSWORD, name: `\u0000${MARKER}` }),
        },
        code: 'validation_error',
        message: 'name: must not contain NUL characters',
      },
      {
        method: 'post',
        request: {
          role: 'instructor',
          path: `/api/v1/courses/${courseId}/quizzes`,
          query: '',
          body: quiz(`\ud800${MARKER}`),
        },
        code: 'validation_error',
        message: 'questions.0.options.1: must be valid Unicode text (it has a lone surrogate)',
      },
    ];
    for (const { method, request, code, message } of cases) {
      const answer = await send(method, request);
      const label = `${method.toUpperCase()} ${request.path}${request.query}`;
      expect(answer.status, label).toBe(400);
      expect(JSON.parse(answer.text), label).toEqual({ error: { code, message, requestId: answer.requestId } });
      await new Promise((resolve) => setImmediate(resolve));
      const lines = logLinesOf(answer.requestId);
      expect(
        lines.map((line) => [line.level, line.msg]),
        label,
      ).toEqual([['info', 'request completed']]);
      expect(JSON.stringify(lines), label).not.toContain(MARKER);
    }
  });
});
