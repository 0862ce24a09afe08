import type { Job, Queue } from 'bullmq';
import pg from 'pg';
import {
  createLogger,
  defaultMigrationsDir,
  loadConfig,
  Migrator,
  queueNames,
  type Config,
  type JobName,
  type Logger,
  type QueueName,
} from '@lms/core';
import { defaultJobOptions, JobProducer } from '@lms/core/queue';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import type { JobContext } from '../job-types.js';
import { startWorkerProcess, type WorkerProcess, type WorkerProcessOptions } from '../runtime/worker-process.js';

/** A logger that writes nothing (tests assert on effects, not log lines). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

/** A migrated throwaway database, a Redis prefix of its own and a producer on it. */
export interface WorkerTestEnv {
  database: TestDatabase;
  /** The test's own pool, for factories and assertions. */
  db: pg.Pool;
  prefix: string;
  producer: JobProducer;
  /** Configuration of a worker on this database and prefix (overrides win). */
  config(overrides?: Record<string, string>): Config;
  /** Starts an in-process worker on this environment (metrics on a free port). */
  startWorker(
    options?: Partial<Omit<WorkerProcessOptions, 'config'>> & { env?: Record<string, string> },
  ): Promise<WorkerProcess>;
  queue(name: QueueName): Queue;
  cleanup(): Promise<void>;
}

export async function createWorkerTestEnv(label: string): Promise<WorkerTestEnv> {
  const database = await createTestDatabase(label);
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  const prefix = testRedisPrefix(label);
  const db = new pg.Pool({ connectionString: database.url, max: 4 });
  const config = (overrides: Record<string, string> = {}) =>
    loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: database.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      LOG_LEVEL: 'silent',
      DB_POOL_SIZE: '1',
      DB_MAX_OVERFLOW: '8',
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      // Retries in tests back off from 2 s like production; tests that need more attempts say so.
      JOB_ATTEMPTS: '3',
      ...overrides,
    });
  const producer = new JobProducer({ redisUrl: testRedisUrl, prefix, defaults: defaultJobOptions(config()) });
  const started: WorkerProcess[] = [];
  return {
    database,
    db,
    prefix,
    producer,
    config,
    queue: (name) => producer.queue(name),
    async startWorker(options = {}) {
      const { env, ...rest } = options;
      const worker = await startWorkerProcess({
        config: config(env),
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
      await Promise.all(started.map((worker) => worker.shutdown({ force: true })));
      for (const name of queueNames) await producer.queue(name).obliterate({ force: true });
      await producer.close();
      await db.end();
      await database.drop();
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

/** The jobs of `name` in the queue's states, for "queued once" assertions. */
export async function jobsNamed(queue: Queue, name: JobName): Promise<Job[]> {
  const jobs = await queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized']);
  return jobs.filter((job) => job.name === name);
}
