import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRedisKeyPrefix, connectClient, createLogger } from '@lms/core';
import { testRedisUrl, type TestEnv } from '@lms/core/testing';
import { startServer, type RunningServer } from './server.js';
import { createApiTestEnv } from './testing/test-app.js';

/**
 * Two deployments on one Redis (a dev stack beside a test run, staging beside dev), each with its
 * own database and QUEUE_PREFIX, started the way main.ts starts the API (no key prefix passed in).
 * Each must answer from its own database: an API whose cache keys ignored the deployment served
 * the other's cached catalogue and course details.
 */
interface Deployment {
  env: TestEnv;
  server: RunningServer;
  url: string;
  courseIds: string[];
}

const deployments: Deployment[] = [];

/** A deployment whose database holds `titles` as published courses of one instructor. */
async function deployment(label: string, titles: string[]): Promise<Deployment> {
  const env = await createApiTestEnv(label);
  const courseIds: string[] = [];
  try {
    const client = await connectClient(env.database.url);
    try {
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO users (email, name, password_hash, role) VALUES ($1, 'Teacher', 'not a hash', 'instructor') RETURNING id`,
        [`teacher-${label}@example.com`],
      );
      for (const title of titles) {
        const course = await client.query<{ id: string }>(
          `INSERT INTO courses (instructor_id, title, description, status, published_at)
           VALUES ($1, $2, 'About it', 'published', now()) RETURNING id`,
          [rows[0]!.id, title],
        );
        courseIds.push(course.rows[0]!.id);
      }
    } finally {
      await client.end();
    }
    const parsed = env.config({ HOST: '127.0.0.1' });
    const server = await startServer(
      { ...parsed, SECRET_KEY: parsed.SECRET_KEY! },
      { port: 0, logger: createLogger({ level: 'silent' }) },
    );
    const created = { env, server, url: `http://127.0.0.1:${server.port}`, courseIds };
    deployments.push(created);
    return created;
  } catch (error) {
    await env.cleanup();
    throw error;
  }
}

async function titles(url: string): Promise<string[]> {
  // A page size no other test asks for: should the keys collide, no one else reads this page.
  const response = await fetch(`${url}/api/v1/courses?limit=7`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { items: { title: string }[] }).items.map((course) => course.title).sort();
}

let first: Deployment;
let second: Deployment;

beforeAll(async () => {
  first = await deployment('shared_redis_a', ['Alpha']);
  second = await deployment('shared_redis_b', ['Beta', 'Gamma']);
});

afterAll(async () => {
  for (const { server, env } of deployments) {
    try {
      await server.stop();
    } finally {
      await env.cleanup();
    }
  }
});

describe('two deployments on one Redis', () => {
  it('each serves its own catalogue and course details, cached under its own QUEUE_PREFIX', async () => {
    // The first caches its catalogue page and its course; the second then reads the same page
    // size and that course id, which its database does not hold.
    expect(await titles(first.url)).toEqual(['Alpha']);
    expect((await fetch(`${first.url}/api/v1/courses/${first.courseIds[0]}`)).status).toBe(200);
    expect(await titles(second.url)).toEqual(['Beta', 'Gamma']);
    expect((await fetch(`${second.url}/api/v1/courses/${first.courseIds[0]}`)).status).toBe(404);

    // The entries live under the deployment's QUEUE_PREFIX, where its clean-up removes them.
    const redis = new Redis(testRedisUrl);
    try {
      for (const { env } of [first, second]) {
        const prefix = apiRedisKeyPrefix(env.queuePrefix);
        expect(prefix.startsWith(`${env.redisPrefix}:`)).toBe(true);
        // Version 0: nothing changed a course of either since it started.
        expect(await redis.exists(`${prefix}cache:{catalogue}:0:7:`)).toBe(1);
      }
      const course = `cache:course:{${first.courseIds[0]}}`;
      expect(await redis.exists(`${apiRedisKeyPrefix(first.env.queuePrefix)}${course}`)).toBe(1);
      expect(await redis.exists(`${apiRedisKeyPrefix(second.env.queuePrefix)}${course}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
