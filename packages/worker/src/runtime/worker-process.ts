import type pg from 'pg';
import {
  createPool,
  defaultMigrationsDir,
  describeConnectionError,
  Migrator,
  redisConnectionOptions,
  type Config,
  type Logger,
  type QueueName,
} from '@lms/core';
import { defaultJobOptions, JobProducer, jobRetention } from '@lms/core/queue';
import { createMailer, type Mailer } from '../emails/mailer.js';
import { createHandlers, hardLimitRetries, type HandlerDeps } from '../handlers.js';
import type { JobHandlers } from '../job-types.js';
import { resolveTimeLimits, type TimeLimits } from '../time-limits.js';
import { settlesWithin } from './deadline.js';
import {
  createQueueWorkers,
  defaultConnectionCloseTimeoutMs,
  type QueueWorkers,
  type RecoverySettings,
} from './job-runner.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';
import { startOutboxRelay, type OutboxRelay } from './outbox-relay.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import type { RedisGuardSettings } from './redis-guard.js';
import { startScheduler, type Scheduler } from './scheduler.js';

/** How long a stop waits for each connection to close (see `closeAll`). */
const closeStepTimeoutMs = defaultConnectionCloseTimeoutMs;

export interface WorkerProcessOptions {
  config: Config;
  logger: Logger;
  /** Queues to work on (none: a scheduler-only process). */
  queues: readonly QueueName[];
  /** Run the scheduler (job schedulers, queue-depth sampling) in this process. */
  scheduler: boolean;
  /** Injectable for tests: limits per queue (default: config + override table). */
  limits?: Record<QueueName, TimeLimits>;
  /** Injectable for tests: stalled-job detection settings. */
  recovery?: Partial<RecoverySettings>;
  /** Injectable for tests: replaces some handlers. */
  handlers?: (deps: HandlerDeps) => Partial<JobHandlers>;
  /** Port of /health and /metrics (default WORKER_METRICS_PORT; 0 picks a free one). */
  metricsPort?: number;
  sampleIntervalMs?: number;
  /** Pause of the outbox relay between passes once the outbox is drained (default 1000 ms). */
  outboxRelayIntervalMs?: number;
  /** Injectable for tests: see `defaultRedisSocketTimeoutMs` in core. */
  redisSocketTimeoutMs?: number;
  /** Injectable for tests: see `defaultRedisGuardSettings`. */
  redisGuard?: Partial<RedisGuardSettings>;
}

export interface WorkerProcess {
  metricsPort: number;
  metrics: WorkerMetrics;
  workers: QueueWorkers;
  producer: JobProducer;
  pool: pg.Pool;
  /**
   * Stops taking jobs, lets the running ones finish (each within its time limits), then closes
   * every connection. `force` abandons running jobs instead: they go back to the queue when
   * their lock expires. Later calls return the first call's promise.
   */
  shutdown(options?: { force?: boolean }): Promise<void>;
}

/**
 * Assembles the worker process: one PostgreSQL pool, one job producer (the outbox relay's), one
 * SMTP transport, the queue workers, the outbox relay, the scheduler if asked, and the
 * health/metrics server.
 */
export async function startWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  const { config, logger } = options;
  if (!config.DATABASE_URL) throw new Error('DATABASE_URL is not set: the worker needs the LMS database');
  const pool = createPool({
    connectionString: config.DATABASE_URL,
    config,
    applicationName: 'lms-worker',
    onIdleClientError: (error) => logger.warn({ err: error }, 'idle database connection lost'),
  });
  // Every migration this release ships must be applied; newer ones (a later release already
  // migrated the database during a rolling deploy) are fine. Asked of the server itself when the
  // pool goes through a pooler: the answer is the one `lmsctl migrate` (always direct) acts on.
  const migrationsUrl = config.DATABASE_DIRECT_URL ?? config.DATABASE_URL;
  let pending: string[];
  try {
    const { entries } = await new Migrator({
      connectionString: migrationsUrl,
      dir: defaultMigrationsDir,
    }).status();
    pending = entries.filter((entry) => entry.state === 'pending').map((entry) => entry.id);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw describeConnectionError(error, migrationsUrl, config.DB_POOL_TIMEOUT_SECONDS * 1000);
  }
  if (pending.length > 0) {
    await pool.end().catch(() => undefined);
    throw new Error(`the database is not migrated (pending: ${pending.join(', ')}): run \`pnpm lmsctl migrate\` first`);
  }
  const jobOptions = defaultJobOptions(config);
  const producer = new JobProducer({
    redisUrl: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    prefix: config.QUEUE_PREFIX,
    defaults: jobOptions,
    socketTimeoutMs: options.redisSocketTimeoutMs,
  });
  const mailer: Mailer = createMailer({ url: config.SMTP_URL, from: config.SMTP_FROM });
  const metrics = createWorkerMetrics();
  const deps: HandlerDeps = { config, pool, producer, mailer };
  const handlers: JobHandlers = { ...createHandlers(deps), ...options.handlers?.(deps) };
  const workers = createQueueWorkers({
    queues: options.queues,
    handlers,
    connection: redisConnectionOptions(config.REDIS_URL),
    clusterNodes: config.REDIS_CLUSTER_NODES,
    socketTimeoutMs: options.redisSocketTimeoutMs,
    redisGuard: options.redisGuard,
    prefix: config.QUEUE_PREFIX,
    concurrency: {
      emails: config.WORKER_CONCURRENCY_EMAILS,
      progress: config.WORKER_CONCURRENCY_PROGRESS,
      certificates: config.WORKER_CONCURRENCY_CERTIFICATES,
      webhooks: config.WORKER_CONCURRENCY_WEBHOOKS,
    },
    limits: options.limits ?? resolveTimeLimits(config),
    retryAfterHardLimit: hardLimitRetries,
    metrics,
    logger,
    recovery: options.recovery,
    ...jobRetention(config),
  });
  let stopping = false;
  let relay: OutboxRelay | undefined;
  let scheduler: Scheduler | undefined;
  let server: MetricsServer | undefined;
  const closeAll = async (force: boolean) => {
    // In this order: running jobs still use the producer, the pool and the mailer. The
    // scheduler goes first: its samples are of no use to a stopping process.
    const steps: Array<[string, () => unknown]> = [
      ['scheduler', () => scheduler?.stop()],
      ['workers', () => workers.close({ force })],
      ['outbox relay', () => relay?.stop()],
      ['job producer', () => producer.close()],
      ['mailer', () => mailer.close()],
      ['database pool', () => pool.end()],
      ['metrics server', () => server?.close()],
    ];
    for (const [what, step] of steps) {
      const result = (async () => {
        await step();
      })();
      result.catch((error: unknown) => logger.warn({ err: error }, `closing the ${what} failed`));
      // The workers bound their own wait (running jobs have time limits, Redis a deadline). The
      // other steps only close connections: one that hangs (a Redis or database that does not
      // answer, a connection an abandoned handler still holds) must not keep the process alive
      // past its stop grace period.
      if (what === 'workers') await result.catch(() => undefined);
      else if (!(await settlesWithin(result, closeStepTimeoutMs))) {
        logger.warn(`closing the ${what} took more than ${closeStepTimeoutMs / 1000} s: stopping without it`);
      }
    }
  };
  try {
    relay = startOutboxRelay({ pool, producer, logger, intervalMs: options.outboxRelayIntervalMs });
    if (options.scheduler) {
      scheduler = await startScheduler({
        producer,
        pool,
        jobOptions,
        metrics,
        logger,
        sampleIntervalMs: options.sampleIntervalMs,
      });
    }
    // /health answers from the first probe of Redis on (at most its 2 s timeout away).
    await workers.redisChecked;
    server = await startMetricsServer({
      port: options.metricsPort ?? config.WORKER_METRICS_PORT,
      host: config.HOST,
      metricsPath: config.METRICS_PATH,
      registry: metrics.registry,
      health: () => {
        const redis = workers.redisState();
        return {
          status: stopping ? 'stopping' : redis === 'ok' ? 'ok' : 'unhealthy',
          redis,
          queues: options.queues,
          scheduler: options.scheduler,
        };
      },
    });
  } catch (error) {
    await closeAll(true).catch(() => undefined);
    throw error;
  }
  logger.info(
    { queues: options.queues, scheduler: options.scheduler, metricsPort: server.port, prefix: config.QUEUE_PREFIX },
    'worker started',
  );
  let closing: Promise<void> | undefined;
  return {
    metricsPort: server.port,
    metrics,
    workers,
    producer,
    pool,
    shutdown({ force = false } = {}) {
      stopping = true;
      closing ??= closeAll(force);
      return closing;
    },
  };
}
