import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@lms/core';
import { freePort } from '@lms/core/testing';
import { createApp } from './app.js';
import { closeDeps, createDeps } from './deps.js';
import { call, createCourse, createTestApi, createUser, type TestApi } from './testing/test-app.js';
import { startTcpProxy } from './testing/tcp-proxy.js';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

describe('health, readiness and metrics', () => {
  it('answers /health and /ready', async () => {
    expect((await call(api, 'get', '/health')).body).toEqual({ status: 'ok' });
    const ready = await call(api, 'get', '/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok' } });
  });

  it('labels requests with the route pattern, never the raw URL', async () => {
    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor);
    await call(api, 'get', `/api/v1/courses/${course.id}`);
    await call(api, 'get', '/no/such/route');
    const metrics = (await call(api, 'get', '/metrics')).text;
    expect(metrics).toContain('http_requests_total{method="GET",route="/api/v1/courses/:id",status_code="200"}');
    expect(metrics).toContain('route="unmatched",status_code="404"');
    expect(metrics).not.toContain(course.id);
    expect(metrics).toMatch(/^http_request_duration_seconds_bucket\{/m);
    expect(metrics).toContain('lms_cache_requests_total{cache="course"');
    expect(metrics).toContain('process_cpu_user_seconds_total');
  });
});

describe('readiness while a dependency is down', () => {
  it('Redis down: stays 200 as "degraded" (the instance still serves), keeps serving reads, and recovers without a restart', async () => {
    const proxy = await startTcpProxy(6379);
    const down = await createTestApi({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    try {
      const instructor = await createUser(down, 'instructor');
      const course = await createCourse(down, instructor);
      expect((await call(down, 'get', '/ready')).body.status).toBe('ready');
      proxy.cut();
      const ready = await call(down, 'get', '/ready');
      expect(ready.status).toBe(200);
      // The rate limits are counted in each process's memory meanwhile, and /ready says so.
      expect(ready.body).toEqual({
        status: 'degraded',
        checks: { database: 'ok', redis: 'unavailable', rateLimits: 'per-process' },
      });
      expect((await call(down, 'get', `/api/v1/courses/${course.id}`)).status).toBe(200);
      expect((await call(down, 'get', '/api/v1/courses')).status).toBe(200);
      const metrics = (await call(down, 'get', '/metrics')).text;
      expect(Number(/^lms_redis_write_failures_total\{use="rate_limit"\} (\d+)/m.exec(metrics)?.[1])).toBe(2);
      proxy.restore();
      let body: { status?: string } = {};
      for (let waited = 0; body.status !== 'ready' && waited < 15_000; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        body = (await call(down, 'get', '/ready')).body;
      }
      expect(body).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok' } });
    } finally {
      await down.close();
      await proxy.close();
    }
  });

  it('PostgreSQL down: 503 "not ready", whether Redis answers or not', async () => {
    const closed = await freePort();
    const noDatabase = await createTestApi({ DATABASE_URL: `postgres://root@127.0.0.1:${closed}/lms` });
    const nothing = await createTestApi({
      DATABASE_URL: `postgres://root@127.0.0.1:${closed}/lms`,
      REDIS_URL: `redis://127.0.0.1:${closed}`,
    });
    try {
      const ready = await call(noDatabase, 'get', '/ready');
      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ status: 'not ready', checks: { database: 'unavailable', redis: 'ok' } });
      const neither = await call(nothing, 'get', '/ready');
      expect(neither.status).toBe(503);
      expect(neither.body).toEqual({
        status: 'not ready',
        checks: { database: 'unavailable', redis: 'unavailable', rateLimits: 'per-process' },
      });
    } finally {
      await noDatabase.close();
      await nothing.close();
    }
  });
});

describe('Redis refusing writes', () => {
  it('counts each cache write and rate-limited request it did not take, and logs each kind once a minute at most', async () => {
    const closed = await freePort();
    const destination = new PassThrough();
    const lines: Array<{ msg: string; suppressed?: number }> = [];
    destination.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
    });
    const deps = createDeps(
      { ...api.config, REDIS_URL: `redis://127.0.0.1:${closed}` },
      { redisPrefix: `${api.env.redisPrefix}:refused:`, logger: createLogger({ level: 'warn', destination }) },
    );
    const app = createApp(deps);
    try {
      const instructor = await createUser(api, 'instructor');
      const course = await createCourse(api, instructor);
      for (let n = 0; n < 20; n++) expect((await call(app, 'get', `/api/v1/courses/${course.id}`)).status).toBe(200);
      const metrics = (await call(app, 'get', '/metrics')).text;
      const failures = (use: string) =>
        Number(new RegExp(`^lms_redis_write_failures_total\\{use="${use}"\\} (\\d+)`, 'm').exec(metrics)?.[1]);
      expect(failures('rate_limit')).toBe(20);
      // The first read stores the course (and fails to); the others are served from this process's memory.
      expect(failures('cache')).toBe(1);
      await new Promise((resolve) => setImmediate(resolve));
      expect(lines.filter((line) => line.msg.startsWith('rate limits are counted per process'))).toHaveLength(1);
      expect(lines.filter((line) => line.msg.startsWith('cache write to Redis failed'))).toHaveLength(1);
    } finally {
      await closeDeps(deps);
    }
  });
});

describe('HTTP hygiene', () => {
  it('sends the security headers and no x-powered-by; no HSTS, even in production (Caddy sends it)', async () => {
    const response = await call(api, 'get', '/health');
    expect(response.headers['x-powered-by']).toBeUndefined();
    expect(response.headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'content-security-policy': "default-src 'none';frame-ancestors 'none'",
      'x-xss-protection': '0',
    });
    expect(response.headers['strict-transport-security']).toBeUndefined();
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const production = await createTestApi({ NODE_ENV: 'production', WEBHOOK_SECRET_KEY: '0'.repeat(64) });
    try {
      const headers = (await call(production, 'get', '/health')).headers;
      expect(headers['x-frame-options']).toBe('DENY');
      expect(headers['strict-transport-security']).toBeUndefined();
    } finally {
      await production.close();
    }
  });

  it('answers 413 to a body over 100 kB and 400 to malformed JSON, in the error shape', async () => {
    const big = await call(api, 'post', '/api/v1/auth/login', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(120_000) }),
    });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('payload_too_large');
    const broken = await call(api, 'post', '/api/v1/auth/login', {
      headers: { 'content-type': 'application/json' },
      body: '{"email": ',
    });
    expect(broken.status).toBe(400);
    expect(broken.body.error).toMatchObject({ code: 'malformed_json', message: 'request body is not valid JSON' });
    const unknown = await call(api, 'get', '/api/v2/nothing');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: { code: 'not_found', message: 'no route for GET /api/v2/nothing' } });
  });

  it('treats SQL metacharacters as data in every kind of parameter', async () => {
    const evil = `'; DROP TABLE users; --`;
    const instructor = await createUser(api, 'instructor');
    const created = await call(api, 'post', '/api/v1/courses', {
      token: instructor.token,
      body: { title: evil, description: `" OR 1=1 --` },
    });
    expect(created.status).toBe(201);
    expect(created.body.title).toBe(evil);
    const byEvilId = await call(api, 'get', `/api/v1/courses/${encodeURIComponent(evil)}`);
    expect(byEvilId.status).toBe(400);
    expect(byEvilId.body.error.message).toBe('id: must be a UUID');
    expect((await call(api, 'get', `/api/v1/courses?cursor=${encodeURIComponent(evil)}`)).status).toBe(400);
    expect(
      (await call(api, 'get', `/api/v1/courses?limit=${encodeURIComponent('1; DELETE FROM courses')}`)).status,
    ).toBe(400);
    expect(
      (await call(api, 'post', '/api/v1/auth/login', { body: { email: `x@y.z' OR '1'='1`, password: evil } })).status,
    ).toBe(400);
    expect(
      (await call(api, 'post', '/api/v1/auth/login', { body: { email: 'x@example.com', password: evil } })).status,
    ).toBe(401);
    expect((await call(api, 'get', `/api/v1/certificates/verify/${encodeURIComponent(evil)}`)).status).toBe(400);
    const users = await api.db.query('SELECT count(*)::int AS n FROM users');
    expect(users.rows[0]).toMatchObject({ n: expect.any(Number) });
  });
});

describe('request log', () => {
  it('logs one line per request with id, method, path without the query, route, status and duration; probes stay quiet', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
    });
    const deps = createDeps(api.config, {
      // Under the app's own prefix, so its clean-up removes these keys too.
      redisPrefix: `${api.env.redisPrefix}:request-log:`,
      logger: createLogger({ level: 'info', destination: stream }),
    });
    try {
      const app = createApp(deps);
      await call(app, 'get', '/health');
      await call(app, 'get', '/api/v1/courses?limit=5&token=secret-in-query', {
        headers: { 'x-request-id': 'req-42' },
      });
      const detail = await call(app, 'get', '/api/v1/courses/no-such-course');
      const missing = await call(app, 'get', '/api/v1/nothing-here');
      await new Promise((resolve) => setImmediate(resolve));
      const requests = lines.filter((line) => line.msg === 'request completed');
      expect(requests).toEqual([
        expect.objectContaining({
          level: 'info',
          req: { id: 'req-42', method: 'GET', path: '/api/v1/courses', route: '/api/v1/courses' },
          res: { statusCode: 200 },
          responseTime: expect.any(Number),
        }),
        expect.objectContaining({
          level: 'info',
          req: {
            id: detail.headers['x-request-id'],
            method: 'GET',
            path: '/api/v1/courses/no-such-course',
            route: '/api/v1/courses/:id',
          },
          res: { statusCode: detail.status },
        }),
        expect.objectContaining({
          level: 'info',
          req: {
            id: missing.headers['x-request-id'],
            method: 'GET',
            path: '/api/v1/nothing-here',
            route: 'unmatched',
          },
          res: { statusCode: 404 },
        }),
      ]);
      expect(JSON.stringify(lines)).not.toContain('secret-in-query');
    } finally {
      await closeDeps(deps);
    }
  });
});

describe('internal errors', () => {
  async function brokenApp(debug: boolean) {
    const deps = createDeps(
      { ...api.config, DEBUG: debug },
      { redisPrefix: `${api.env.redisPrefix}:broken:`, logger: createLogger({ level: 'silent' }) },
    );
    const app = createApp(deps);
    // A pool that has been ended fails every query: an error nobody anticipated.
    await deps.db.primary.end();
    return { app, deps };
  }

  it('never leak a stack, SQL or path with DEBUG off, and carry the request id', async () => {
    const { app, deps } = await brokenApp(false);
    try {
      const response = await call(app, 'get', '/api/v1/courses', { headers: { 'x-request-id': 'req-123' } });
      expect(response.status).toBe(500);
      expect(response.body).toEqual({
        error: {
          code: 'internal_error',
          message: 'internal error; quote request id req-123 when reporting it',
          requestId: 'req-123',
        },
      });
    } finally {
      deps.redis.disconnect();
      deps.subscriber.disconnect();
    }
  });

  it('include the stack with DEBUG on (development only)', async () => {
    const { app, deps } = await brokenApp(true);
    try {
      const response = await (await import('supertest')).default(app).get('/api/v1/courses');
      expect(response.status).toBe(500);
      expect(response.body.error.stack).toContain('Error');
    } finally {
      deps.redis.disconnect();
      deps.subscriber.disconnect();
    }
  });
});

describe('rate limits', () => {
  it('answer 429 with Retry-After after the login limit, counted across two API instances', async () => {
    const limited = await createTestApi({ RATE_LIMIT_AUTH_PER_MINUTE: '3' });
    const second = createDeps(limited.config, {
      redisPrefix: limited.deps.redisPrefix,
      logger: createLogger({ level: 'silent' }),
    });
    const otherInstance = createApp(second);
    // Until its connection is up, a new process counts in memory (the insurance limiter).
    if (second.redis.status !== 'ready') await once(second.redis, 'ready');
    if (limited.deps.redis.status !== 'ready') await once(limited.deps.redis, 'ready');
    try {
      const attempt = (app: Parameters<typeof call>[0]) =>
        call(app, 'post', '/api/v1/auth/login', { body: { email: 'someone@example.com', password: 'wrong password' } });
      expect((await attempt(limited)).status).toBe(401);
      expect((await attempt(otherInstance)).status).toBe(401);
      expect((await attempt(limited)).status).toBe(401);
      const blocked = await attempt(otherInstance);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
      expect(blocked.body.error.code).toBe('rate_limited');
      // Other routes are not under the login limit.
      expect((await call(otherInstance, 'get', '/api/v1/courses')).status).toBe(200);
    } finally {
      await closeDeps(second);
      await limited.close();
    }
  });

  it('limit requests per IP and per user', async () => {
    const limited = await createTestApi({ RATE_LIMIT_PER_MINUTE: '4', RATE_LIMIT_USER_PER_MINUTE: '2' });
    // Counted in Redis from the first request (before the connection is up, in memory).
    if (limited.deps.redis.status !== 'ready') await once(limited.deps.redis, 'ready');
    try {
      const user = await createUser(limited, 'student');
      expect((await call(limited, 'get', '/api/v1/users/me', { token: user.token })).status).toBe(200);
      expect((await call(limited, 'get', '/api/v1/users/me', { token: user.token })).status).toBe(200);
      expect((await call(limited, 'get', '/api/v1/users/me', { token: user.token })).status).toBe(429);
      expect((await call(limited, 'get', '/api/v1/courses')).status).toBe(200);
      expect((await call(limited, 'get', '/api/v1/courses')).status).toBe(429);
      // Probes are never limited.
      expect((await call(limited, 'get', '/health')).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
