import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import type http from 'node:http';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, queueNames, type QueueName } from '@lms/core';
import { openQueues } from '../../../lmsctl/src/queues/connection.js';
import { runLmsctl } from '../../../lmsctl/src/testing/run-cli.js';
import { createApp } from '../../../api/src/app.js';
import { closeDeps, createDeps, type Deps } from '../../../api/src/deps.js';
import { call, createCourse, createTestApi, createUser, type TestApi } from '../../../api/src/testing/test-app.js';
import { insertSubscription } from '../testing/factories.js';
import { startRedisCluster, type OwnRedisCluster } from '../testing/redis-cluster.js';
import { startSmtpSink, type SmtpSink } from '../testing/smtp-sink.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import { eventually } from '../testing/worker-harness.js';
import { startWorkerProcess, type WorkerProcess } from './worker-process.js';

/**
 * The whole stack on a real 3-master Redis Cluster: the worker, two API processes and lmsctl,
 * all given REDIS_CLUSTER_NODES. Their logs are kept: none may name a MOVED or CROSSSLOT error.
 */

const SECRET = 'whsec-cluster';
// The queues' hash tag: every queue key is in its slot, on one master.
const QUEUE_PREFIX = '{lms-cluster-test}';
const MISROUTED = /MOVED|CROSSSLOT|ASK /;

let cluster: OwnRedisCluster;
let sink: SmtpSink;
let receiver: WebhookReceiver;
let api: TestApi;
const lines: string[] = [];
const opened: Deps[] = [];
let worker: WorkerProcess | undefined;
let server: http.Server | undefined;

/** A logger whose JSON lines are kept in `lines`. */
function capturingLogger(name: string) {
  const destination = new PassThrough();
  destination.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  return createLogger({ name, level: 'info', destination });
}

/** What the processes on the cluster logged so far names no misrouted command. */
function expectNothingMisrouted(): void {
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.filter((line) => MISROUTED.test(line))).toEqual([]);
}

/** Another API process on the cluster: its own connections, the same keys. */
async function apiProcess(name: string) {
  const deps = createDeps(api.config, { redisPrefix: api.deps.redisPrefix, logger: capturingLogger(name) });
  opened.push(deps);
  for (const client of [deps.redis, deps.subscriber]) if (client.status !== 'ready') await once(client, 'ready');
  return createApp(deps);
}

beforeAll(async () => {
  cluster = await startRedisCluster();
  sink = await startSmtpSink();
  receiver = await startWebhookReceiver(SECRET);
  api = await createTestApi({
    REDIS_CLUSTER_NODES: cluster.seeds,
    QUEUE_PREFIX,
    RATE_LIMIT_AUTH_PER_MINUTE: '10',
    SMTP_URL: sink.url,
    WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  });
});

afterAll(async () => {
  server?.close();
  await worker?.shutdown({ force: true });
  for (const deps of opened) await closeDeps(deps);
  await api?.close();
  await receiver?.close();
  await sink?.close();
  await cluster?.stop();
});

describe('on a Redis Cluster', () => {
  it('runs a learner journey through the API and the worker, every job once', async () => {
    worker = await startWorkerProcess({
      config: { ...api.config, DB_POOL_SIZE: 2 },
      logger: capturingLogger('worker'),
      queues: queueNames,
      scheduler: true,
      metricsPort: 0,
      outboxRelayIntervalMs: 100,
      sampleIntervalMs: 200,
    });
    const health = await fetch(`http://127.0.0.1:${worker.metricsPort}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', redis: 'ok' });

    const app = await apiProcess('api-a');
    await insertSubscription(api.db, {
      url: receiver.url,
      events: ['enrollment.created', 'lesson.completed', 'course.completed', 'certificate.issued'],
      secret: SECRET,
    });
    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor, { title: 'Shards', lessons: 2 });
    const registered = await call(app, 'post', '/api/v1/auth/register', {
      body: { email: 'shard-learner@example.com', password: 'correct horse battery staple', name: 'Ada' },
    });
    expect(registered.status).toBe(201);
    const learner = { id: registered.body.user.id as string, token: registered.body.accessToken as string };
    const enrolled = await call(app, 'post', `/api/v1/courses/${course.id}/enroll`, { token: learner.token });
    expect(enrolled.status).toBe(201);
    const enrollmentId = enrolled.body.id as string;
    for (const lessonId of course.lessonIds) {
      const completed = await call(app, 'post', `/api/v1/enrollments/${enrollmentId}/lessons/${lessonId}/complete`, {
        token: learner.token,
      });
      expect(completed.status).toBe(200);
    }

    // welcome, enrolment confirmation, course completed, certificate issued
    await sink.waitForMessages(4, 30_000);
    await receiver.waitForRequests(5, 30_000);
    const opened = openQueues(
      { connection: { host: '127.0.0.1', port: cluster.nodes[0]!.port }, clusterNodes: cluster.nodes },
      QUEUE_PREFIX,
      queueNames,
    );
    try {
      const pending = async () => {
        let count = 0;
        for (const queue of opened.queues) {
          const counts = await queue.getJobCounts('waiting', 'active', 'prioritized');
          count += Object.values(counts).reduce((sum, n) => sum + n, 0);
        }
        return count;
      };
      await eventually(async () => (await pending()) === 0);
      // Nothing more arrives: no job ran twice.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const keys = sink.messages.map((message) => message.headers['x-lms-idempotency-key']);
      expect(keys.toSorted()).toEqual(
        [
          `welcome-${learner.id}`,
          `enrollment-confirmation-${enrollmentId}`,
          `course-completed-${enrollmentId}`,
          `certificate-issued-${enrollmentId}`,
        ].toSorted(),
      );
      const events = receiver.requests.map((request) => (request.json as { type: string }).type);
      expect(events.toSorted()).toEqual(
        [
          'enrollment.created',
          'lesson.completed',
          'lesson.completed',
          'course.completed',
          'certificate.issued',
        ].toSorted(),
      );
      const { rows } = await api.db.query('SELECT 1 FROM certificates WHERE enrollment_id = $1', [enrollmentId]);
      expect(rows).toHaveLength(1);
      // Each job in the queues once, completed at its first attempt.
      const jobs = (
        await Promise.all(opened.queues.map((queue) => queue.getJobs(['completed', 'failed', 'delayed'])))
      ).flat();
      // The journey's jobs; the scheduler's periodic ones wait for their next run.
      const journey = new Set(['email.send', 'progress.recompute', 'certificate.render', 'webhook.deliver']);
      const runs = jobs.filter((job) => journey.has(job.name));
      expect(runs.map((job) => [job.name, job.finishedOn !== undefined, job.failedReason])).toEqual(
        runs.map((job) => [job.name, true, undefined]),
      );
      expect(runs.filter((job) => job.attemptsMade > 1)).toEqual([]);
      expect(new Set(runs.map((job) => `${job.queueName}/${job.id}`)).size).toBe(runs.length);
      expect(runs.length).toBeGreaterThanOrEqual(4 + 5 + 2 + 1);
      expectNothingMisrouted();
    } finally {
      await opened.close();
    }
  });

  it('shares the rate limits and the cache invalidations between two API processes', async () => {
    const a = await apiProcess('api-a');
    const b = await apiProcess('api-b');
    for (const app of [a, b]) {
      expect((await call(app, 'get', '/ready')).body).toEqual({
        status: 'ready',
        checks: { database: 'ok', redis: 'ok' },
      });
    }
    // RATE_LIMIT_AUTH_PER_MINUTE=10 for both processes together, not 10 each.
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 20; attempt++) {
      const response = await call(attempt % 2 ? b : a, 'post', '/api/v1/auth/login', {
        body: { email: 'nobody@example.com', password: 'wrong password' },
        headers: { 'x-forwarded-for': '203.0.113.7' },
      });
      statuses.push(response.status);
    }
    expect(statuses).toEqual([...Array<number>(10).fill(401), ...Array<number>(10).fill(429)]);

    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor, { title: 'Before' });
    expect((await call(b, 'get', `/api/v1/courses/${course.id}`)).body.title).toBe('Before');
    await call(a, 'patch', `/api/v1/courses/${course.id}`, { token: instructor.token, body: { title: 'After' } });
    await eventually(async () => (await call(b, 'get', `/api/v1/courses/${course.id}`)).body.title === 'After', 5000);
    const metrics = (await call(a, 'get', '/metrics')).text;
    expect(metrics).toContain('lms_redis_write_failures_total{use="cache"} 0');
    expect(metrics).toContain('lms_redis_write_failures_total{use="rate_limit"} 0');
    expectNothingMisrouted();
  });

  it('answers lmsctl queue list and status', async () => {
    const app = await apiProcess('api-status');
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const env = {
      DATABASE_URL: api.config.DATABASE_URL,
      REDIS_CLUSTER_NODES: cluster.seeds,
      QUEUE_PREFIX,
      LMS_BACKUP_DIR: '/nonexistent/lms-cluster-test',
    };
    const list = await runLmsctl(['queue', 'list', '--json'], { env });
    expect(list.stderr).not.toMatch(MISROUTED);
    expect(list.exitCode).toBe(0);
    const queues = JSON.parse(list.stdout) as { queues: Array<{ name: QueueName; workers: number }> };
    expect(queues.queues.map((queue) => queue.name)).toEqual(queueNames);
    // The worker's connections are found on the master serving the queues' slot.
    expect(queues.queues.every((queue) => queue.workers >= 1)).toBe(true);

    const status = await runLmsctl(
      ['status', '--json', '--api-url', `http://127.0.0.1:${(server.address() as AddressInfo).port}`],
      { env },
    );
    expect(status.stderr).not.toMatch(MISROUTED);
    const items = Object.fromEntries(
      (JSON.parse(status.stdout) as { items: Array<{ name: string; state: string; detail: string }> }).items.map(
        (item) => [item.name, item],
      ),
    );
    expect(items.api).toMatchObject({ state: 'ok' });
    // A cluster without persistence is worth a warning (every master named), not a failure.
    expect(items.redis).toMatchObject({
      state: 'warn',
      detail: expect.stringMatching(/^Redis Cluster .*3 masters, state ok/),
    });
    for (const name of queueNames) expect(items[`queue ${name}`]?.state).toBe('ok');

    // A node's URL alone finds the cluster.
    const byUrl = await runLmsctl(
      ['queue', 'list', '--json', '--redis-url', `redis://127.0.0.1:${cluster.nodes[2]!.port}`],
      {
        env: { DATABASE_URL: api.config.DATABASE_URL, QUEUE_PREFIX },
      },
    );
    expect(byUrl.exitCode).toBe(0);
    expect((JSON.parse(byUrl.stdout) as typeof queues).queues.map((queue) => [queue.name, queue.workers])).toEqual(
      queues.queues.map((queue) => [queue.name, queue.workers]),
    );
    expectNothingMisrouted();
  });
});

describe('a worker pointed at one node of the cluster (REDIS_URL, no REDIS_CLUSTER_NODES)', () => {
  it('backs off from the MOVED errors without flooding its log, and /health fails', async () => {
    // A node that does not serve the queues' slot: every queue command is answered MOVED.
    const owner = await cluster.nodeOf(QUEUE_PREFIX);
    const other = cluster.nodes.find((node) => node.port !== owner.port)!;
    const own: string[] = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => own.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    const misrouted = await startWorkerProcess({
      config: {
        ...api.config,
        REDIS_URL: `redis://127.0.0.1:${other.port}`,
        REDIS_CLUSTER_NODES: undefined,
        DB_POOL_SIZE: 1,
      },
      logger: createLogger({ level: 'info', destination }),
      queues: ['emails', 'progress'],
      scheduler: false,
      metricsPort: 0,
    });
    const movedReplies = async () => {
      const stats = new Redis(other);
      try {
        return Number(/^errorstat_MOVED:count=(\d+)/m.exec(await stats.info('errorstats'))?.[1] ?? 0);
      } finally {
        stats.disconnect();
      }
    };
    try {
      const health = await fetch(`http://127.0.0.1:${misrouted.metricsPort}/health`);
      expect(health.status).toBe(503);
      await eventually(async () =>
        /backing off/.test(await (await fetch(`http://127.0.0.1:${misrouted.metricsPort}/health`)).text()),
      );
      const before = await movedReplies();
      await new Promise((resolve) => setTimeout(resolve, 2000));
      // Paused: at most the probes and a resumed round in 2 s, where BullMQ alone retries every 100 ms.
      expect((await movedReplies()) - before).toBeLessThan(30);
    } finally {
      await misrouted.shutdown({ force: true });
    }
    const moved = own.filter((line) => /MOVED/.test(line));
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.length).toBeLessThanOrEqual(6);
    expect(own.some((line) => /Redis keeps failing .*the workers stop taking jobs/.test(line))).toBe(true);
  });
});
