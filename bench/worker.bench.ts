import { createRequire } from 'node:module';
import os from 'node:os';
import type * as BullMQ from '../packages/worker/node_modules/bullmq/dist/esm/index.js';
import { createLogger, createPool, loadConfig, queueNames, redisConnectionOptions, type QueueName } from '@lms/core';
import { defaultJobOptions, JobProducer } from '@lms/core/queue';
import { createMailer } from '../packages/worker/src/emails/mailer.js';
import { createHandlers } from '../packages/worker/src/handlers.js';
import type { JobHandlers } from '../packages/worker/src/job-types.js';
import { createQueueWorkers, defaultRecoverySettings } from '../packages/worker/src/runtime/job-runner.js';
import { createWorkerMetrics } from '../packages/worker/src/runtime/metrics.js';
import { resolveTimeLimits } from '../packages/worker/src/time-limits.js';
import { BENCH_SCALE, ensureBenchDatabase } from './bench-database.js';
import { median, type Benchmark, type Comparison } from './lib.js';

// bullmq is a dependency of the worker package, not of the workspace root: load the worker's own
// copy (the one its workers run on), so the raw side and the wrapped side run the same BullMQ.
const { Queue, Worker } = createRequire(new URL('../packages/worker/package.json', import.meta.url))(
  'bullmq',
) as typeof BullMQ;
type Queue = BullMQ.Queue;
type Worker = BullMQ.Worker;
type JobsOptions = BullMQ.JobsOptions;

const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const connection = redisConnectionOptions(redisUrl);
const prefix = `{lms-bench}:${process.pid}`;
/**
 * Many short runs, raw and wrapped back to back (order alternating): on a shared machine the
 * load changes from second to second, and close pairs see the same load.
 */
const ROUNDS = 21;
/** Jobs per timed run at each concurrency: about half a second of work. */
const NOOP_JOBS: Record<number, number> = { 1: 2000, 10: 6000 };
const RECOMPUTE_JOBS = 2000;
const CONCURRENCIES = [1, 10] as const;
const log = (line: string) => process.stderr.write(`${line}\n`);
const silent = createLogger({ level: 'silent' });
const config = loadConfig({ REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: 'silent' });
/** The options the producers give every job (retries, retention), so both sides store the same. */
const jobOptions: JobsOptions = defaultJobOptions(config);

type Start = (queue: QueueName, concurrency: number) => { worker: Worker; close: () => Promise<void> };

/**
 * Queues one job per payload on a paused queue, starts the worker, and times from the resume to the
 * last completion (acknowledged in Redis): connection set-up and enqueueing stay out of it.
 */
async function throughput(
  queue: Queue,
  name: string,
  payloads: Array<Record<string, unknown>>,
  start: Start,
  concurrency: number,
): Promise<number> {
  await queue.obliterate({ force: true });
  await queue.pause();
  for (let index = 0; index < payloads.length; index += 1000) {
    await queue.addBulk(payloads.slice(index, index + 1000).map((data) => ({ name, data, opts: jobOptions })));
  }
  const { worker, close } = start(queue.name as QueueName, concurrency);
  let completed = 0;
  // A failed job would leave the count short forever: it ends the measurement instead.
  const done = new Promise<void>((resolve, reject) => {
    worker.on('completed', () => {
      if (++completed === payloads.length) resolve();
    });
    worker.on('failed', (_job, error) =>
      reject(new Error(`a ${name} job failed during the benchmark: ${error.message}`)),
    );
  });
  await worker.waitUntilReady();
  const started = performance.now();
  await queue.resume();
  let seconds: number;
  try {
    await done;
    seconds = (performance.now() - started) / 1000;
  } finally {
    await close();
  }
  return payloads.length / seconds;
}

const noopHandlers: JobHandlers = {
  'email.send': () => Promise.resolve(),
  'progress.recompute': () => Promise.resolve(),
  'certificate.render': () => Promise.resolve(),
  'webhook.deliver': () => Promise.resolve(),
  'maintenance.cleanup': () => Promise.resolve(),
  'email.inactivity-reminders': () => Promise.resolve(),
  'progress.reconcile': () => Promise.resolve(),
};

/**
 * Raw BullMQ: the processor does nothing at all. The worker settings are the ones the worker
 * uses (name, lock and stalled-check timings), so the comparison isolates the wrapper.
 */
const startRaw: Start = (queue, concurrency) => {
  const worker = new Worker(queue, () => Promise.resolve(), {
    connection,
    prefix,
    concurrency,
    name: `${os.hostname()}:${process.pid}`,
    lockDuration: defaultRecoverySettings.lockDurationMs,
    stalledInterval: defaultRecoverySettings.stalledIntervalMs,
    maxStalledCount: defaultRecoverySettings.maxStalledCount,
  });
  return { worker, close: () => worker.close() };
};

/** One metrics registry, as in a worker process (default process metrics included). */
const metrics = createWorkerMetrics();

/** The worker's own wrapper (schema parse, limits, metrics) around handlers that do nothing. */
function startWrapped(handlers: JobHandlers): Start {
  return (queue, concurrency) => {
    const workers = createQueueWorkers({
      queues: [queue],
      handlers,
      connection,
      prefix,
      concurrency: { emails: concurrency, progress: concurrency, certificates: concurrency, webhooks: concurrency },
      limits: resolveTimeLimits(config),
      metrics,
      logger: silent,
    });
    return { worker: workers.workers.get(queue)!, close: () => workers.close() };
  };
}

/**
 * The worker's wrapper against a bare BullMQ processor, both around no-op jobs, at concurrency
 * 1 and 10 in the same run (rounds interleaved, order alternating); then real
 * `progress.recompute` jobs against the benchmark database.
 */
export const workerThroughput: Benchmark = {
  id: 'worker',
  async run() {
    const queue = new Queue('progress', { connection, prefix });
    const payloads = (count: number) =>
      Array.from({ length: count }, (_, index) => ({
        enrollmentId: `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`,
      }));
    const samples: Record<string, number[]> = {};
    const record = (key: string, value: number) => (samples[key] ??= []).push(value);
    try {
      // Round 0 warms up (JIT, connections, Redis) and is not recorded.
      for (let round = 0; round <= ROUNDS; round++) {
        for (const concurrency of CONCURRENCIES) {
          const sides: Array<[string, Start]> = [
            [`raw-${concurrency}`, startRaw],
            [`wrapped-${concurrency}`, startWrapped(noopHandlers)],
          ];
          if (round % 2 === 0) sides.reverse();
          for (const [key, start] of sides) {
            const rate = await throughput(
              queue,
              'progress.recompute',
              payloads(NOOP_JOBS[concurrency]!),
              start,
              concurrency,
            );
            if (round > 0) record(key, rate);
          }
        }
        log(`no-op round ${round}/${ROUNDS}`);
      }

      // progress.recompute for real, on the benchmark database (schema brought up to date;
      // the enrolments' progress is put back afterwards, so the database stays as generated).
      const url = await ensureBenchDatabase('lms_bench', BENCH_SCALE, log);
      const benchConfig = loadConfig({
        DATABASE_URL: url,
        REDIS_URL: redisUrl,
        QUEUE_PREFIX: prefix,
        LOG_LEVEL: 'silent',
      });
      const pool = createPool({ connectionString: url, config: benchConfig, applicationName: 'lms-bench-worker' });
      const producer = new JobProducer({ redisUrl, prefix, defaults: jobOptions });
      const mailer = createMailer({ url: benchConfig.SMTP_URL, from: benchConfig.SMTP_FROM });
      const handlers = createHandlers({ config: benchConfig, pool, producer, mailer });
      const { rows: saved } = await pool.query<{ id: string; progress: string }>(
        `SELECT id, progress::text AS progress FROM enrollments WHERE status = 'active' ORDER BY id LIMIT $1`,
        [RECOMPUTE_JOBS],
      );
      const restore = () =>
        pool.query(
          `UPDATE enrollments e SET progress = s.progress::numeric
             FROM unnest($1::uuid[], $2::text[]) AS s(id, progress) WHERE e.id = s.id`,
          [saved.map((row) => row.id), saved.map((row) => row.progress)],
        );
      const recompute: Record<number, number[]> = {};
      try {
        for (let round = 1; round <= 3; round++) {
          for (const concurrency of CONCURRENCIES) {
            await restore();
            (recompute[concurrency] ??= []).push(
              await throughput(
                queue,
                'progress.recompute',
                saved.map((row) => ({ enrollmentId: row.id })),
                startWrapped(handlers),
                concurrency,
              ),
            );
          }
          log(`recompute round ${round}/3`);
        }
      } finally {
        await restore();
        mailer.close();
        await producer.close();
        await pool.end();
      }

      const comparisons: Comparison[] = CONCURRENCIES.map((concurrency) => ({
        what: `worker wrapper around a no-op handler, concurrency ${concurrency}`,
        value: median(samples[`wrapped-${concurrency}`]!),
        anchorName: `raw BullMQ no-op processor, concurrency ${concurrency}`,
        anchor: median(samples[`raw-${concurrency}`]!),
        unit: 'jobs/s',
        limit: 0.85,
        direction: 'at-least',
      }));
      return {
        id: 'worker',
        title: 'Worker job throughput',
        method: `${NOOP_JOBS[1]} (concurrency 1) or ${NOOP_JOBS[10]} (concurrency 10) jobs queued on a paused queue, then timed from the resume to the last acknowledgement; median of ${ROUNDS} rounds after a warm-up round, raw and wrapped back to back in each round, the order alternating; local Redis, production job options (retries, retention), both through tsx as \`pnpm --filter @lms/worker start\` runs the worker. The raw side has the worker's BullMQ settings (name, lock and stalled-check timings) and a processor that does nothing; the wrapper is what every job goes through: name and schema check, soft and hard time limits (a watchdog per queue) with their abort signal, \`lms_jobs_total\` and \`lms_job_duration_seconds\`.`,
        comparisons,
        notes: [
          ...CONCURRENCIES.map((concurrency) => {
            const pairs = samples[`wrapped-${concurrency}`]!.map(
              (value, index) => value / samples[`raw-${concurrency}`]![index]!,
            );
            const raw = samples[`raw-${concurrency}`]!;
            const wrapped = samples[`wrapped-${concurrency}`]!;
            return `- Concurrency ${concurrency}: best runs ${Math.max(...wrapped).toFixed(0)} (wrapped) and ${Math.max(...raw).toFixed(0)} (raw) jobs/s; wrapped ÷ raw per round: median ${median(pairs).toFixed(2)}×, range ${Math.min(...pairs).toFixed(2)}–${Math.max(...pairs).toFixed(2)}× (raw runs ranged ${Math.min(...raw).toFixed(0)}–${Math.max(...raw).toFixed(0)} jobs/s: the machine is shared).`;
          }),
          ...CONCURRENCIES.map(
            (concurrency) =>
              `- \`progress.recompute\` on the benchmark database (scale ${BENCH_SCALE}, ${saved.length} active enrolments of ~0.9 M, progress restored between rounds), concurrency ${concurrency}: **${median(recompute[concurrency]!).toFixed(0)} jobs/s** (median of 3 rounds).`,
          ),
        ],
      };
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      for (const name of queueNames) {
        const other = new Queue(name, { connection, prefix });
        await other.obliterate({ force: true });
        await other.close();
      }
    }
  },
};
