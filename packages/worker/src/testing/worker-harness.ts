import type { Job, Queue } from 'bullmq';
import pg from 'pg';
import { createLogger, queueNames, type JobName, type Logger, type Queryable, type QueueName } from '@lms/core';
import { defaultJobOptions, JobProducer } from '@lms/core/queue';
import { createTestEnv, testRedisUrl, type TestEnv } from '@lms/core/testing';
import type { JobContext } from '../job-types.js';
import { startWorkerProcess, type WorkerProcess, type WorkerProcessOptions } from '../runtime/worker-process.js';

/** A logger that writes nothing (tests assert on effects, not log lines). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

/** What a worker under test adds to the core test environment. */
const WORKER_TEST_VARS = {
  DB_POOL_SIZE: '1',
  WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  // Retries in tests back off from 2 s like production; tests that need more attempts say so.
  JOB_ATTEMPTS: '3',
};

/** The core test environment (database, Redis prefix, config), a pool and a producer on it, and its workers. */
export interface WorkerTestEnv extends TestEnv {
  /** The test's own pool, for factories and assertions. */
  db: pg.Pool;
  producer: JobProducer;
  /** Starts an in-process worker on this environment (metrics on a free port). */
  startWorker(
    options?: Partial<Omit<WorkerProcessOptions, 'config'>> & { env?: Record<string, string> },
  ): Promise<WorkerProcess>;
  queue(name: QueueName): Queue;
  /** Stops the workers started here, closes the pool and the producer, then the core clean-up. */
  cleanup(): Promise<void>;
}

export async function createWorkerTestEnv(label: string): Promise<WorkerTestEnv> {
  const env = await createTestEnv(label, WORKER_TEST_VARS);
  const db = new pg.Pool({ connectionString: env.database.url, max: 4 });
  // pool.end() resolves before its clients' sockets are closed; the clean-up's DROP DATABASE …
  // FORCE can then terminate one still closing, whose error would otherwise go unhandled.
  db.on('connect', (client) => client.on('error', () => undefined));
  const producer = new JobProducer({
    redisUrl: testRedisUrl,
    prefix: env.queuePrefix,
    defaults: defaultJobOptions(env.config()),
  });
  const started: WorkerProcess[] = [];
  return {
    ...env,
    db,
    producer,
    queue: (name) => producer.queue(name),
    async startWorker(options = {}) {
      const { env: vars, ...rest } = options;
      const worker = await startWorkerProcess({
        config: env.config(vars),
        logger: silentLogger,
        queues: queueNames,
        scheduler: false,
        metricsPort: 0,
        recovery: { lockDurationMs: 5000, stalledIntervalMs: 1000 },
        ...rest,
      });
      started.push(worker);
      return worker;
    },
    async cleanup() {
      try {
        await Promise.all(started.map((worker) => worker.shutdown({ force: true })));
        await producer.close();
        await db.end();
      } finally {
        await env.cleanup();
      }
    },
  };
}

/** Waits until the job reaches `state` (polling; BullMQ events need one more connection each). */
export async function waitForJobState(
  queue: Queue,
  jobId: string,
  state: 'completed' | 'failed' | 'active' | 'delayed' | 'waiting',
  timeoutMs = 15_000,
): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await queue.getJobState(jobId);
    // Read after the state matched: a job read before could predate its failure reason.
    const job = current === state ? await queue.getJob(jobId) : undefined;
    if (job) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${current}, expected ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Polls `check` until it returns something other than undefined/false. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A context for calling a handler directly (no queue): a fresh signal, a silent logger. */
export function handlerContext(overrides: Partial<JobContext> = {}): JobContext {
  return { signal: new AbortController().signal, log: silentLogger, jobId: 'test', attempt: 1, ...overrides };
}

/**
 * The jobs of `name` written to the outbox (relayed or not), oldest first, for "queued once"
 * assertions: the outbox is where every job is decided, so it answers without waiting for the relay.
 */
export async function outboxJobs(db: Queryable, name: JobName): Promise<Array<{ id: string; data: unknown }>> {
  const { rows } = await db.query<{ job_id: string; payload: unknown }>(
    'SELECT job_id, payload FROM outbox WHERE job_name = $1 ORDER BY id',
    [name],
  );
  return rows.map((row) => ({ id: row.job_id, data: row.payload }));
}
