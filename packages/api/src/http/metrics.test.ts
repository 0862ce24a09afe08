import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '@lms/core/testing';
import { cacheResults } from '../lib/api-metrics.js';
import { call, createCourse, createTestApi, createUser, type TestApi } from '../testing/test-app.js';

/**
 * What `http_requests_total` and `lms_cache_requests_total` say about real requests: the alert
 * rules, dashboards and `lmsctl check` take them at their word (user traffic only, every request
 * under the route it asked for, every kind of cache hit).
 */

let api: TestApi;

beforeAll(async () => {
  // A per-IP limit a test can reach; nothing else here comes near it.
  api = await createTestApi({ RATE_LIMIT_PER_MINUTE: '60' });
});

afterAll(async () => {
  await api.close();
});

/** Requests counted per `method route status_code`, from the registry. */
async function counted(of: TestApi = api): Promise<Map<string, number>> {
  const { values } = await of.deps.metrics.httpRequests.get();
  const counts = new Map<string, number>();
  for (const { labels, value } of values) {
    const key = `${String(labels.method)} ${String(labels.route)} ${String(labels.status_code)}`;
    counts.set(key, (counts.get(key) ?? 0) + value);
  }
  return counts;
}

async function durationsObserved(of: TestApi, route: string): Promise<number> {
  const { values } = await of.deps.metrics.httpDuration.get();
  return values
    .filter((sample) => sample.metricName === 'http_request_duration_seconds_count' && sample.labels.route === route)
    .reduce((sum, sample) => sum + sample.value, 0);
}

describe('http_requests_total', () => {
  it('counts user requests only: probes and scrapes are not in it, even when /ready answers 503', async () => {
    // The situation that paged HighErrorRate with no user request failing: readiness probes
    // answering 503 (here: PostgreSQL unreachable) while the users' requests succeed.
    const closed = await freePort();
    const unready = await createTestApi({ DATABASE_URL: `postgres://root@127.0.0.1:${closed}/lms` });
    try {
      for (let index = 0; index < 5; index++) {
        await call(unready, 'get', '/health');
        expect((await call(unready, 'get', '/ready')).status).toBe(503);
        await call(unready, 'get', '/metrics');
      }
      expect((await call(unready, 'get', '/api/v1/openapi.json')).status).toBe(200);
      const counts = await counted(unready);
      expect([...counts.keys()].filter((key) => /\/health|\/ready|\/metrics/.test(key))).toEqual([]);
      expect(await durationsObserved(unready, '/ready')).toBe(0);
      expect([...counts]).toEqual([['GET /api/v1/openapi.json 200', 1]]);
      // The scrape says so too.
      expect((await call(unready, 'get', '/metrics')).text).not.toMatch(/route="\/(health|ready|metrics)"/);
    } finally {
      await unready.close();
    }
  });

  it('labels 400, 413 and 429 answers of real routes with the route, and only unknown paths as unmatched', async () => {
    const json = { 'content-type': 'application/json' };
    const broken = await call(api, 'post', '/api/v1/auth/login', { headers: json, body: '{"email": ' });
    expect(broken.status).toBe(400);
    const big = await call(api, 'post', '/api/v1/courses', {
      headers: json,
      body: JSON.stringify({ title: 'x'.repeat(120_000) }),
    });
    expect(big.status).toBe(413);
    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor);
    const unreadable = await call(api, 'patch', `/api/v1/courses/${course.id}`, {
      token: instructor.token,
      headers: { 'content-type': 'application/json' },
      body: '[',
    });
    expect(unreadable.status).toBe(400);
    await call(api, 'get', '/api/v1/no-such-thing');

    const counts = await counted();
    expect(counts.get('POST /api/v1/auth/login 400')).toBe(1);
    expect(counts.get('POST /api/v1/courses 413')).toBe(1);
    expect(counts.get('PATCH /api/v1/courses/:id 400')).toBe(1);
    expect(counts.get('GET unmatched 404')).toBe(1);
    expect([...counts.keys()].filter((key) => key.includes('unmatched'))).toEqual(['GET unmatched 404']);
  });

  it('labels the per-IP limit by route, and still limits paths that match no route', async () => {
    const before = await counted();
    let limited = 0;
    // 60 a minute for this test API's one client address: the earlier tests used a few of them.
    for (let index = 0; index < 70 && limited === 0; index++) {
      if ((await call(api, 'get', '/api/v1/openapi.json')).status === 429) limited++;
    }
    expect(limited).toBe(1);
    expect((await call(api, 'get', '/api/v1/no-such-thing')).status).toBe(429);
    const after = await counted();
    const grew = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);
    expect(grew('GET /api/v1/openapi.json 429')).toBe(1);
    expect(grew('GET unmatched 429')).toBe(1);
  });
});

describe('lms_cache_requests_total', () => {
  it('counts a hit in process memory as local_hit, names every result in its help, and starts every series at 0', async () => {
    const fresh = await createTestApi();
    try {
      const before = (await call(fresh, 'get', '/metrics')).text;
      for (const cache of ['course', 'catalogue'])
        for (const result of cacheResults)
          expect(before).toContain(`lms_cache_requests_total{cache="${cache}",result="${result}"} 0`);
      expect(before).toContain(
        `# HELP lms_cache_requests_total Cache lookups by cache and result (${cacheResults.join(', ')}).`,
      );

      const instructor = await createUser(fresh, 'instructor');
      const course = await createCourse(fresh, instructor);
      for (let index = 0; index < 3; index++) await call(fresh, 'get', `/api/v1/courses/${course.id}`);
      const { values } = await fresh.deps.metrics.cacheRequests.get();
      const course_ = Object.fromEntries(
        values
          .filter((sample) => sample.labels.cache === 'course')
          .map((sample) => [sample.labels.result, sample.value]),
      );
      // The first read misses and fills both levels; the next two are served from this process.
      expect(course_).toEqual({ miss: 1, hit: 0, local_hit: 2, error: 0 });
    } finally {
      await fresh.close();
    }
  });
});

describe('the exposition', () => {
  it('passes promtool check metrics after real traffic', async () => {
    const text = (await call(api, 'get', '/metrics')).text;
    const check = await execa('promtool', ['check', 'metrics'], { input: text, reject: false, all: true });
    expect(check.all, 'promtool check metrics').toBe('');
    expect(check.exitCode).toBe(0);
  });
});
