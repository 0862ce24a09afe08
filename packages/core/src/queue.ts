import { Queue, type JobsOptions } from 'bullmq';
import type { Config } from './config.js';
import { jobSchemas, queueOf, type JobName, type JobOf, type QueueName } from './jobs.js';
import { defaultRedisSocketTimeoutMs, redisConnectionOptions, type RedisNodeAddress } from './redis.js';
import { createRedisClient, type RedisClient } from './redis-client.js';

/**
 * Default options of every job: retries with exponential backoff, completed jobs trimmed after a
 * day, failed ones kept for inspection for FAILED_JOB_RETENTION_HOURS.
 */
export function defaultJobOptions(config: Pick<Config, 'JOB_ATTEMPTS' | 'FAILED_JOB_RETENTION_HOURS'>): JobsOptions {
  return { attempts: config.JOB_ATTEMPTS, backoff: { type: 'exponential', delay: 2000 }, ...jobRetention(config) };
}

/**
 * How long finished jobs are kept (ages in seconds, as BullMQ takes them): completed ones a day
 * (at most 10 000 per queue), failed ones FAILED_JOB_RETENTION_HOURS. Producers, workers and the
 * clean-up job all use these.
 */
export function jobRetention(config: Pick<Config, 'FAILED_JOB_RETENTION_HOURS'>): {
  removeOnComplete: { age: number; count: number };
  removeOnFail: { age: number };
} {
  return {
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: config.FAILED_JOB_RETENTION_HOURS * 3600 },
  };
}

/**
 * Queues whose jobs get more attempts than JOB_ATTEMPTS. Webhook receivers are other people's
 * servers: their deploys and outages last far longer than a hiccup of our SMTP relay, and a
 * delivery that gives up is an event the subscriber never sees. Ten attempts, backing off
 * exponentially from 2 s, keep retrying for about 17 minutes.
 */
export const minimumAttemptsByQueue: Partial<Record<QueueName, number>> = { webhooks: 10 };

/** The default options of one queue's jobs: the shared defaults with that queue's attempts. */
export function queueJobOptions(queue: QueueName, defaults: JobsOptions): JobsOptions {
  const minimum = minimumAttemptsByQueue[queue];
  return minimum ? { ...defaults, attempts: Math.max(defaults.attempts ?? 1, minimum) } : defaults;
}

export interface JobProducerOptions {
  /** The Redis server; with `clusterNodes`, only the credentials and TLS of the cluster's nodes. */
  redisUrl: string;
  /** REDIS_CLUSTER_NODES: the queues live in this Redis Cluster (`prefix` must hold a hash tag). */
  clusterNodes?: readonly RedisNodeAddress[];
  /** BullMQ key prefix (QUEUE_PREFIX). */
  prefix: string;
  defaults: JobsOptions;
  /** See `defaultRedisSocketTimeoutMs` (the default). */
  socketTimeoutMs?: number;
}

/**
 * The producer side of the job contract, shared by the api and the worker: a job is validated
 * against its schema before it is queued, and goes to the queue its name belongs to.
 */
export class JobProducer {
  private readonly queues = new Map<QueueName, Queue>();
  /** Cluster clients handed to BullMQ, which leaves a client it was given open: closed here. */
  private readonly clusterClients: RedisClient[] = [];

  constructor(private readonly options: JobProducerOptions) {}

  /** The BullMQ queue behind `name` (created on first use). */
  queue(name: QueueName): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      const settings = {
        // Fail fast instead of buffering commands while Redis is down: callers decide what to do.
        enableOfflineQueue: false,
        connectTimeout: 2000,
        // A connection stuck in its handshake is dropped and retried instead of failing forever.
        socketTimeout: this.options.socketTimeoutMs ?? defaultRedisSocketTimeoutMs,
      };
      const connection = redisConnectionOptions(this.options.redisUrl);
      let cluster: RedisClient | undefined;
      if (this.options.clusterNodes) {
        // BullMQ opens a plain client from options; a cluster it takes as a client.
        cluster = createRedisClient({ connection, clusterNodes: this.options.clusterNodes }, settings);
        cluster.on('error', () => undefined);
        this.clusterClients.push(cluster);
      }
      queue = new Queue(name, {
        connection: cluster ?? { ...connection, ...settings },
        prefix: this.options.prefix,
        defaultJobOptions: queueJobOptions(name, this.options.defaults),
      });
      // Connection errors surface through the calls that fail; keep them from crashing the process.
      queue.on('error', () => undefined);
      this.queues.set(name, queue);
    }
    return queue;
  }

  /**
   * Queues job `name` with `data` (parsed with its schema first, so a bad payload never reaches
   * Redis). A `jobId` makes the enqueue idempotent: BullMQ ignores a second job with the same id.
   */
  async enqueue<N extends JobName>(
    name: N,
    data: JobOf<N>,
    options: { jobId?: string; delay?: number } = {},
  ): Promise<string> {
    const payload = jobSchemas[name].parse(data) as JobOf<N>;
    const job = await this.queue(queueOf[name]).add(name, payload, {
      ...(options.jobId ? { jobId: options.jobId } : {}),
      ...(options.delay ? { delay: options.delay } : {}),
    });
    return job.id ?? '';
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
    this.queues.clear();
    for (const client of this.clusterClients.splice(0)) client.disconnect();
  }
}

/**
 * The id of a job that must be queued at most once, e.g. `certificate-render-<enrollmentId>`
 * (BullMQ refuses custom ids containing ':' or made of digits only).
 */
export function jobIdFor(name: JobName, ...parts: string[]): string {
  return [name.replace('.', '-'), ...parts].join('-');
}
