import os from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import {
  defaultRedisSocketTimeoutMs,
  errorMessage,
  isJobName,
  jobSchemas,
  type JobName,
  queueOf,
  type Logger,
  type QueueName,
  type RedisConnectionOptions,
  type RedisNodeAddress,
} from '@lms/core';
import { createRedisClient, type RedisClient } from '@lms/core/redis-client';
import type { JobContext, JobHandlers } from '../job-types.js';
import { HardTimeLimitError, ShutdownError, SoftTimeLimitError, type TimeLimits } from '../time-limits.js';
import { settlesWithin } from './deadline.js';
import type { JobOutcome, WorkerMetrics } from './metrics.js';
import { startRedisGuard, type RedisGuardSettings, type RedisState } from './redis-guard.js';

/** What one queue's processor works with. */
export interface ProcessorOptions {
  queue: QueueName;
  handlers: JobHandlers;
  limits: TimeLimits;
  metrics: WorkerMetrics;
  logger: Logger;
  /**
   * Jobs retried (with their backoff) after the hard limit abandoned a run; every other job
   * fails for good there. The worker passes `hardLimitRetries` (handlers.ts).
   */
  retryAfterHardLimit?: Partial<Record<JobName, boolean>>;
}

/** A queue's processor: BullMQ calls `process`; the rest serves shutdown. */
export interface JobProcessor {
  process(job: Job): Promise<void>;
  /** Tells every running handler to stop (a forced shutdown). */
  abortAll(reason: Error): void;
  /** Whether no handler of this queue is running. */
  isIdle(): boolean;
  /** Resolves once no handler of this queue is running (at once when none is). */
  idle(): Promise<void>;
  /** Stops the time-limit watchdog. */
  close(): void;
}

type AnyHandler = (data: unknown, ctx: JobContext) => Promise<void>;

/** The runs of one queue's processor still going, and whoever waits for there to be none. */
class RunningJobs {
  private readonly runs = new Set<JobRun>();
  private waiters: Array<() => void> = [];

  get size(): number {
    return this.runs.size;
  }

  add(run: JobRun): void {
    this.runs.add(run);
  }

  delete(run: JobRun): void {
    this.runs.delete(run);
    if (this.runs.size > 0 || this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  values(): IterableIterator<JobRun> {
    return this.runs.values();
  }

  idle(): Promise<void> {
    if (this.runs.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** Whether BullMQ will run the job again after this failure (same rule as `Job.shouldRetryJob`). */
function willRetry(job: Job, error: unknown): boolean {
  const unrecoverable =
    error instanceof UnrecoverableError || (error as Error | undefined)?.name === 'UnrecoverableError';
  return !unrecoverable && job.attemptsMade + 1 < (job.opts.attempts ?? 1);
}

/** BullMQ records `error.message` as the failed reason: whatever was thrown becomes an Error. */
function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(errorMessage(error));
}

function describeIssues(error: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  return error.issues.map((issue) => `${issue.path.map(String).join('.') || '(payload)'}: ${issue.message}`).join('; ');
}

/**
 * One run of one job, and the context its handler gets. A class rather than closures, and no
 * timer of its own (one watchdog checks every run): the wrapper runs for every job, and at
 * thousands of no-op jobs a second each allocation shows. The AbortController and the child
 * logger are made only when the handler asks for them (the dearest parts; many runs never do).
 */
class JobRun implements JobContext {
  readonly jobId: string;
  readonly attempt: number;
  /** Why the run was told to stop (soft limit, hard limit, forced shutdown), once it was. */
  reason: Error | undefined;
  readonly started = performance.now();
  private controller: AbortController | undefined;
  private logger: Logger | undefined;
  private settled = false;
  private rejectRun: ((error: Error) => void) | undefined;
  /** Whether this job is declared safe to run again while an abandoned run may still be going. */
  private retryAfterHardLimit = false;

  constructor(
    private readonly job: Job,
    private readonly options: ProcessorOptions,
    private readonly running: RunningJobs,
  ) {
    this.jobId = job.id ?? '';
    this.attempt = job.attemptsMade + 1;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  get log(): Logger {
    this.logger ??= this.options.logger.child({
      queue: this.options.queue,
      job: this.job.name,
      jobId: this.job.id,
      attempt: this.attempt,
    });
    return this.logger;
  }

  abort(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }

  /** Called by the watchdog: the soft limit fires the signal, the hard limit abandons the run. */
  checkLimits(now: number): void {
    const elapsed = now - this.started;
    const { softMs, hardMs } = this.options.limits;
    if (elapsed >= softMs && !this.reason) this.abort(new SoftTimeLimitError(softMs));
    if (elapsed >= hardMs && !this.settled) {
      const error = new HardTimeLimitError(this.job.name, hardMs);
      // The run is abandoned (its promise is ignored from now on), but a handler still
      // listening is told to stop too (if the soft limit has not already told it).
      this.abort(error);
      this.rejectRun?.(this.fail(error));
    }
  }

  /** Runs the handler and settles with it (or with the hard limit, whichever comes first). */
  execute(handler: AnyHandler, data: unknown, retryAfterHardLimit: boolean): Promise<void> {
    this.retryAfterHardLimit = retryAfterHardLimit;
    this.running.add(this);
    return new Promise<void>((resolve, reject) => {
      this.rejectRun = reject;
      let result: Promise<void>;
      try {
        result = handler(data, this);
      } catch (error) {
        // A handler that throws instead of rejecting is treated the same.
        result = Promise.reject(asError(error));
      }
      result.then(
        () => {
          if (this.settled) return;
          if (this.options.logger.isLevelEnabled('debug')) this.log.debug('job completed');
          this.finish('completed');
          resolve();
        },
        (error: unknown) => {
          if (!this.settled) reject(this.fail(error));
        },
      );
    });
  }

  /**
   * Logs and counts a failure; returns the error BullMQ records (soft-limit stops say so). The
   * hard limit fails the job for good unless the job is declared safe to retry: the abandoned run
   * may still be going, and only a transactional, idempotent handler can have a second run
   * beside it (its transaction either commits once or rolls back, and the retry waits on its locks).
   */
  fail(error: unknown): Error {
    let failed: Error;
    if (error instanceof HardTimeLimitError) {
      failed = this.retryAfterHardLimit ? error : new UnrecoverableError(error.message);
    } else if (this.reason instanceof SoftTimeLimitError) {
      failed = new Error(`${this.job.name} ${this.reason.message}: ${errorMessage(error)}`, { cause: error });
    } else {
      failed = asError(error);
    }
    const outcome = willRetry(this.job, failed) ? 'retried' : 'failed';
    const message = errorMessage(failed);
    if (outcome === 'retried') this.log.warn({ err: failed }, `job failed, will retry: ${message}`);
    else this.log.error({ err: failed }, `job failed: ${message}`);
    this.finish(outcome);
    return failed;
  }

  private finish(outcome: JobOutcome): void {
    this.settled = true;
    this.running.delete(this);
    const { metrics, queue } = this.options;
    const name = this.job.name;
    metrics.countJob(queue, name, outcome);
    metrics.observeDuration(queue, name, (performance.now() - this.started) / 1000);
  }
}

/**
 * The wrapper around every handler (what the benchmark measures against a bare BullMQ
 * processor): refuses unknown names and invalid payloads for good, runs the handler with an
 * abort signal that fires at the soft limit, abandons it at the hard limit, and counts and times
 * every run. A rejection hands the job back to BullMQ, which retries it with backoff or fails it.
 * `process` is not an async function: each extra await between the handler's result and BullMQ
 * costs a microtask turn, and at concurrency 1 those turns measurably cut throughput.
 */
export function createJobProcessor(options: ProcessorOptions): JobProcessor {
  const { queue, handlers, limits, retryAfterHardLimit = {} } = options;
  const running = new RunningJobs();
  // One watchdog per queue instead of a timer per job, ticking at a tenth of the soft limit
  // (20 ms to 1 s): the limits fire that much late at most.
  const watchdog = setInterval(
    () => {
      const now = performance.now();
      for (const run of running.values()) run.checkLimits(now);
    },
    Math.min(1000, Math.max(20, Math.floor(limits.softMs / 10))),
  );
  watchdog.unref();
  return {
    process(job: Job) {
      const run = new JobRun(job, options, running);
      const name = job.name;
      if (!isJobName(name) || queueOf[name] !== queue) {
        return Promise.reject(
          run.fail(new UnrecoverableError(`unknown job "${name}" on the ${queue} queue: no handler for it`)),
        );
      }
      const parsed = jobSchemas[name].safeParse(job.data);
      if (!parsed.success) {
        return Promise.reject(
          run.fail(new UnrecoverableError(`invalid payload for ${name}: ${describeIssues(parsed.error)}`)),
        );
      }
      return run.execute(handlers[name] as AnyHandler, parsed.data, retryAfterHardLimit[name] === true);
    },
    abortAll(reason) {
      for (const run of running.values()) run.abort(reason);
    },
    isIdle: () => running.size === 0,
    idle: () => running.idle(),
    close() {
      clearInterval(watchdog);
    },
  };
}

/** BullMQ settings that decide how fast a dead worker's job is recovered. */
export interface RecoverySettings {
  /** How long a job's lock lasts without renewal; a dead worker's jobs are free after this. */
  lockDurationMs: number;
  /** How often each worker looks for jobs whose lock expired (and puts them back in the queue). */
  stalledIntervalMs: number;
  /** Recoveries of one job before it is failed as a poison pill (it killed its worker each time). */
  maxStalledCount: number;
}

/** Production values: BullMQ's defaults, with one more recovery than its single one. */
export const defaultRecoverySettings: RecoverySettings = {
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 2,
};

export interface QueueWorkersOptions {
  queues: readonly QueueName[];
  handlers: JobHandlers;
  /** The Redis server; with `clusterNodes`, only the credentials and TLS of the cluster's nodes. */
  connection: RedisConnectionOptions;
  /** REDIS_CLUSTER_NODES: the queues live in this Redis Cluster (`prefix` holds a hash tag). */
  clusterNodes?: readonly RedisNodeAddress[];
  prefix: string;
  concurrency: Record<QueueName, number>;
  limits: Record<QueueName, TimeLimits>;
  metrics: WorkerMetrics;
  logger: Logger;
  recovery?: Partial<RecoverySettings>;
  /** See `ProcessorOptions.retryAfterHardLimit`: none when left out. */
  retryAfterHardLimit?: Partial<Record<JobName, boolean>>;
  /** Kept finished jobs (worker-side; the producers' job options usually say the same). */
  removeOnComplete?: { age: number; count?: number };
  removeOnFail?: { age: number; count?: number };
  /** See `defaultConnectionCloseTimeoutMs`. */
  connectionCloseTimeoutMs?: number;
  /** See `defaultRedisSocketTimeoutMs` in core (the default). */
  socketTimeoutMs?: number;
  /** Injectable for tests: see `defaultRedisGuardSettings`. */
  redisGuard?: Partial<RedisGuardSettings>;
}

/**
 * How long a stop waits for BullMQ to close its Redis connections once no job of this process
 * runs. A Redis that answers takes milliseconds. One that does not (down, or a connection
 * parked in ioredis' `reconnecting` state) is waited for forever by BullMQ's close, which then
 * never resolves (taskforcesh/bullmq#4656); the process stops without it instead.
 */
export const defaultConnectionCloseTimeoutMs = 5000;

export interface QueueWorkers {
  workers: Map<QueueName, Worker>;
  /** Whether the queues' Redis answers, or the workers back off from its errors (see `startRedisGuard`). */
  redisState(): RedisState;
  /** Settles once Redis has been probed for the first time. */
  redisChecked: Promise<void>;
  /**
   * Stops taking jobs and waits for the running ones (each is bounded by its hard limit);
   * `force` abandons them instead (their locks expire and another worker recovers them). Once
   * no job runs, the Redis connections get `connectionCloseTimeoutMs` to close; past that the
   * close resolves anyway (with a warning), so a stop never waits on an unreachable Redis. A
   * job whose result could not be written meanwhile is recovered like one of a dead worker.
   */
  close(options?: { force?: boolean }): Promise<void>;
}

/**
 * One BullMQ worker per queue: `concurrency` jobs at a time, each acknowledged only when its
 * handler finishes; a job whose worker died is put back by the stalled-job check of any other
 * worker once its lock expires.
 */
export function createQueueWorkers(options: QueueWorkersOptions): QueueWorkers {
  const recovery = { ...defaultRecoverySettings, ...options.recovery };
  const processors: JobProcessor[] = [];
  const workers = new Map<QueueName, Worker>();
  const socketTimeout = options.socketTimeoutMs ?? defaultRedisSocketTimeoutMs;
  const target = options.clusterNodes
    ? { connection: options.connection, clusterNodes: options.clusterNodes }
    : { connection: options.connection };
  // BullMQ opens each worker's two connections from plain options; from a cluster client it
  // takes a copy for each instead, so this one is only their template and never connects.
  const clusterTemplate: RedisClient | undefined = options.clusterNodes
    ? createRedisClient(target, { lazyConnect: true, maxRetriesPerRequest: null, socketTimeout })
    : undefined;
  for (const queue of options.queues) {
    const processor = createJobProcessor({
      queue,
      handlers: options.handlers,
      limits: options.limits[queue],
      metrics: options.metrics,
      logger: options.logger,
      retryAfterHardLimit: options.retryAfterHardLimit,
    });
    processors.push(processor);
    const worker = new Worker(queue, (job: Job) => processor.process(job), {
      // Both of the worker's connections (commands, and the blocking wait for jobs) drop a
      // socket that stops answering, also in the middle of their handshake, and reconnect.
      connection: clusterTemplate ?? { ...options.connection, socketTimeout },
      prefix: options.prefix,
      concurrency: options.concurrency[queue],
      name: `${os.hostname()}:${process.pid}`,
      lockDuration: recovery.lockDurationMs,
      stalledInterval: recovery.stalledIntervalMs,
      maxStalledCount: recovery.maxStalledCount,
      ...(options.removeOnComplete ? { removeOnComplete: options.removeOnComplete } : {}),
      ...(options.removeOnFail ? { removeOnFail: options.removeOnFail } : {}),
    });
    // Connection trouble is reported here and retried by BullMQ; without a listener it would crash the process.
    worker.on('error', (error) => guard.onError(error, queue));
    worker.on('stalled', (jobId) =>
      options.logger.warn({ queue, jobId }, 'job stalled (its worker died or blocked): queued again'),
    );
    workers.set(queue, worker);
  }
  // The guard's own connection: it must answer while the workers' connections are busy waiting
  // for jobs, and it reads a key of the queues so that it reaches the node serving their slot.
  const probeClient = createRedisClient(target, {
    connectTimeout: 2000,
    socketTimeout,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 500, 5000),
  });
  probeClient.on('error', () => undefined);
  const probeKey = `${options.prefix}:${options.queues[0] ?? 'emails'}:meta`;
  const guard = startRedisGuard({
    workers: [...workers.values()],
    probe: () => probeClient.exists(probeKey),
    logger: options.logger,
    settings: options.redisGuard,
  });
  const closeGuard = () => {
    guard.stop();
    probeClient.disconnect();
    clusterTemplate?.disconnect();
  };
  return {
    workers,
    redisState: () => guard.state(),
    redisChecked: guard.checked,
    async close({ force = false } = {}) {
      closeGuard();
      if (force) for (const processor of processors) processor.abortAll(new ShutdownError());
      const closed = Promise.all([...workers.values()].map((worker) => worker.close(force)));
      const timeoutMs = options.connectionCloseTimeoutMs ?? defaultConnectionCloseTimeoutMs;
      // The deadline runs only while no job does: a job BullMQ handed over just before the
      // close may still start, and it gets its time limits like any other.
      let done: boolean;
      do {
        await Promise.all(processors.map((processor) => processor.idle()));
        done = await settlesWithin(closed, timeoutMs);
      } while (!done && !processors.every((processor) => processor.isIdle()));
      for (const processor of processors) processor.close();
      if (done) {
        await closed;
      } else {
        // BullMQ's close keeps waiting in the background; its failure no longer matters.
        closed.catch(() => undefined);
        options.logger.warn(
          { queues: options.queues },
          `the Redis connections did not close within ${timeoutMs / 1000} s (is Redis reachable?): stopping without them`,
        );
      }
    },
  };
}
