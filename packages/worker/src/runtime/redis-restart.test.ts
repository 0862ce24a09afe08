import net from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, queueJob, queueNames } from '@lms/core';
import { freePort } from '@lms/core/testing';
import { ownRedis, type OwnRedis } from '../testing/redis-server.js';
import { startSmtpSink, type SmtpSink } from '../testing/smtp-sink.js';
import { spawnWorker, type SpawnedWorker } from '../testing/spawn-worker.js';
import { createWorkerTestEnv, eventually, type WorkerTestEnv } from '../testing/worker-harness.js';
import { startWorkerProcess, type WorkerProcess } from './worker-process.js';

/** How long a stop may take before the test gives up on it (a deadline, far above a normal stop). */
const STOP_DEADLINE_MS = 20_000;
const NOT_WRITEABLE = /Stream isn't writeable/;

let env: WorkerTestEnv;
let redis: OwnRedis;
let sink: SmtpSink;
let emails = 0;

beforeAll(async () => {
  env = await createWorkerTestEnv('redis-restart');
  redis = await ownRedis();
  sink = await startSmtpSink();
});

afterAll(async () => {
  await sink?.close();
  await redis?.kill();
  await env?.cleanup();
});

/** Queues an e-mail the way the api does (an outbox row the worker relays) and waits for it at the SMTP sink. */
async function deliverEmail(): Promise<void> {
  emails += 1;
  await queueJob(
    env.db,
    'email.send',
    { to: `learner-${emails}@example.com`, template: 'welcome', props: {}, idempotencyKey: `redis-restart-${emails}` },
    `email-send-redis-restart-${emails}`,
  );
  await sink.waitForMessages(emails, 30_000);
}

/** The status of every Redis connection of `worker`: its producer's queues, and each queue worker's two. */
async function connectionStates(worker: WorkerProcess): Promise<string[]> {
  const backends = [...worker.workers.workers.values()].map((queueWorker) => queueWorker.getBackend());
  const clients = [
    ...queueNames.map((name) => worker.producer.queue(name).getBackend().client),
    ...backends.map((backend) => backend.client),
    ...backends.flatMap((backend) => backend.blockingClient ?? []),
  ];
  return Promise.all(clients.map(async (client) => (await client).status));
}

/** Resolves with `promise`, or fails with `message` once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a restarted Redis', () => {
  let worker: WorkerProcess | undefined;
  let lines: string[] = [];

  afterEach(async () => {
    await redis.start();
    await worker?.shutdown({ force: true });
    worker = undefined;
  });

  async function startWorker(options: { redisSocketTimeoutMs?: number } = {}): Promise<WorkerProcess> {
    lines = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    worker = await startWorkerProcess({
      config: env.config({ REDIS_URL: redis.url, SMTP_URL: sink.url, DB_POOL_SIZE: '2' }),
      logger: createLogger({ level: 'info', destination }),
      queues: queueNames,
      scheduler: true,
      metricsPort: 0,
      sampleIntervalMs: 100,
      outboxRelayIntervalMs: 100,
      redisGuard: { probeIntervalMs: 200 },
      ...options,
    });
    return worker;
  }

  /** Waits until every connection is ready again, then checks that the sampler's warnings stopped. */
  async function expectRecovered(worker: WorkerProcess): Promise<void> {
    await eventually(async () => (await connectionStates(worker)).every((state) => state === 'ready'), 30_000).catch(
      async () => {
        throw new Error(
          `Redis answers, but not every connection is ready: ${(await connectionStates(worker)).join(', ')}`,
        );
      },
    );
    // A sample that failed just before then may still be logging.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const recovered = lines.length;
    // Twenty more sampling rounds (and relay passes) on the restarted Redis.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(lines.slice(recovered).filter((line) => NOT_WRITEABLE.test(line))).toEqual([]);
  }

  it('is used again: jobs run, the warnings stop, /health fails meanwhile, and the worker stops at once', async () => {
    const worker = await startWorker();
    const health = async () => {
      const response = await fetch(`http://127.0.0.1:${worker.metricsPort}/health`);
      return { status: response.status, body: (await response.json()) as { status: string; redis: string } };
    };
    expect(await health()).toMatchObject({ status: 200, body: { status: 'ok', redis: 'ok' } });
    await deliverEmail();

    await redis.kill();
    // The queue-depth sampler runs on the producer's connection, which fails fast while Redis is down.
    await eventually(() => Promise.resolve(lines.some((line) => NOT_WRITEABLE.test(line))));
    await eventually(async () => (await health()).status === 503);
    expect((await health()).body).toMatchObject({ status: 'unhealthy', redis: 'unreachable' });
    await redis.start();
    await eventually(async () => (await health()).status === 200);

    await deliverEmail();
    // Every connection is back: none stays closed or parked in ioredis' `reconnecting` state.
    await expectRecovered(worker);
    await deliverEmail();

    await within(
      worker.shutdown(),
      STOP_DEADLINE_MS,
      `the worker did not stop within ${STOP_DEADLINE_MS / 1000} s after Redis was restarted`,
    );
  });

  it('drops connections whose handshake was never answered and reconnects them', async () => {
    // Longer than BullMQ's blocking wait for jobs (up to 10 s), which must not trip it.
    const worker = await startWorker({ redisSocketTimeoutMs: 12_000 });
    await deliverEmail();

    // While Redis is away something accepts the reconnects and never answers (a server going
    // away with the connection in its backlog, a half-open socket): each connection is left
    // waiting in its handshake, which ioredis' connectTimeout no longer covers.
    await redis.kill();
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => {
      socket.on('error', () => undefined);
      held.push(socket);
    });
    try {
      await new Promise<void>((resolve) => silent.listen(redis.port, '127.0.0.1', resolve));
      await eventually(async () => (await connectionStates(worker)).every((state) => state === 'connect'));
      // Stops listening at once; the connections it accepted stay open, silent.
      silent.close();
      await redis.start();

      await expectRecovered(worker);
      await deliverEmail();
    } finally {
      if (silent.listening) silent.close();
      for (const socket of held) socket.destroy();
    }
    await within(
      worker.shutdown(),
      STOP_DEADLINE_MS,
      `the worker did not stop within ${STOP_DEADLINE_MS / 1000} s after its connections recovered`,
    );
  }, 60_000);
});

describe('a stop while Redis is down', () => {
  let spawned: SpawnedWorker | undefined;

  afterEach(async () => {
    if (spawned && spawned.child.exitCode === null && spawned.child.signalCode === null) {
      spawned.child.kill('SIGKILL');
    }
    await redis.start();
  });

  it('exits 0 within the deadline instead of waiting for Redis', async () => {
    const port = await freePort();
    spawned = spawnWorker(
      ['--scheduler'],
      env.vars({ REDIS_URL: redis.url, SMTP_URL: sink.url, WORKER_METRICS_PORT: String(port), LOG_LEVEL: 'info' }),
    );
    await spawned.waitForLog(/"msg":"worker started"/);
    await redis.kill();
    await spawned.waitForLog(/ECONNREFUSED/);

    spawned.child.kill('SIGTERM');
    const exited = await within(
      spawned.exited,
      STOP_DEADLINE_MS,
      `the worker did not exit within ${STOP_DEADLINE_MS / 1000} s of SIGTERM while Redis was down; its last lines:\n${spawned.stdout().split('\n').slice(-10).join('\n')}`,
    );
    expect(exited).toEqual({ code: 0, signal: null });
    expect(spawned.stdout()).toMatch(/"msg":"stopped"/);
  });
});
