import type { Queue } from 'bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isJobName, jobNames, outboxBacklog, queueOf, type Queryable, type QueueName } from '@lms/core';

/** Job states sampled into `lms_queue_jobs` (DESIGN.md). */
export const sampledStates = ['waiting', 'active', 'delayed', 'failed', 'completed'] as const;

/**
 * prom-client's defaults that `promtool check metrics` refuses: gauges named `_total`, which the
 * exposition format keeps for counters. Each is the sum of a gauge it also exports by type
 * (`nodejs_active_handles{type}` …), so nothing is lost. (The API drops the same three.)
 */
const nonConformingDefaultMetrics = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/** How a run ended: `retried` is a failed attempt that will run again. */
export type JobOutcome = 'completed' | 'failed' | 'retried';

/** The worker's Prometheus metrics (names are the contract of the alert rules and dashboards). */
export interface WorkerMetrics {
  registry: Registry;
  jobsTotal: Counter<'queue' | 'name' | 'status'>;
  jobDuration: Histogram<'queue' | 'name'>;
  queueJobs: Gauge<'queue' | 'state'>;
  outboxDepth: Gauge;
  outboxOldestAge: Gauge;
  /** Counts one run in `lms_jobs_total`. */
  countJob(queue: QueueName, name: string, outcome: JobOutcome): void;
  /** Records one run's duration in `lms_job_duration_seconds`. */
  observeDuration(queue: QueueName, name: string, seconds: number): void;
}

/** The label of a job name: unknown names are collapsed so they cannot explode the series. */
function nameLabel(name: string): string {
  return isJobName(name) ? name : 'unknown';
}

/**
 * A registry of its own per runtime (not prom-client's global one), so several runtimes in one
 * process (tests, the benchmark) do not collide; default process metrics included.
 *
 * Runs are counted into plain numbers and handed to the counter when it is collected (on every
 * scrape): prom-client validates and hashes labels on each `inc`, which at thousands of jobs a
 * second is a measurable share of the wrapper's cost. Label objects are made once per series.
 */
export function createWorkerMetrics(options: { defaultMetrics?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    for (const name of nonConformingDefaultMetrics) registry.removeSingleMetric(name);
  }
  const counts = new Map<string, { labels: { queue: string; name: string; status: JobOutcome }; value: number }>();
  const durationLabels = new Map<string, { queue: string; name: string }>();
  const jobsTotal = new Counter<'queue' | 'name' | 'status'>({
    name: 'lms_jobs_total',
    help: 'Job runs by queue, job name and outcome (completed, failed for good, or failed and retried).',
    labelNames: ['queue', 'name', 'status'],
    registers: [registry],
    collect() {
      for (const entry of counts.values()) {
        if (entry.value === 0) continue;
        this.inc(entry.labels, entry.value);
        entry.value = 0;
      }
    },
  });
  // Every series starts at 0: rate() and increase() cannot see the step from "absent" to 1, so a
  // series created by the first failure would hide that failure from the alert rules.
  for (const name of jobNames) {
    for (const status of ['completed', 'failed', 'retried'] as const)
      jobsTotal.inc({ queue: queueOf[name], name, status }, 0);
  }
  const jobDuration = new Histogram<'queue' | 'name'>({
    name: 'lms_job_duration_seconds',
    help: 'Duration of job runs, whatever their outcome.',
    labelNames: ['queue', 'name'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  return {
    registry,
    jobsTotal,
    jobDuration,
    queueJobs: new Gauge({
      name: 'lms_queue_jobs',
      help: 'Jobs per queue and state, sampled by the scheduler.',
      labelNames: ['queue', 'state'],
      registers: [registry],
    }),
    outboxDepth: new Gauge({
      name: 'lms_outbox_depth',
      help: 'Jobs written to the outbox and not yet relayed to their queue, sampled by the scheduler.',
      registers: [registry],
    }),
    outboxOldestAge: new Gauge({
      name: 'lms_outbox_oldest_age_seconds',
      help: 'Age of the oldest job not yet relayed from the outbox (0 when none), sampled by the scheduler.',
      registers: [registry],
    }),
    countJob(queue, name, outcome) {
      const key = `${queue}\n${name}\n${outcome}`;
      let entry = counts.get(key);
      if (!entry) {
        entry = { labels: { queue, name: nameLabel(name), status: outcome }, value: 0 };
        counts.set(key, entry);
      }
      entry.value++;
    },
    observeDuration(queue, name, seconds) {
      const key = `${queue}\n${name}`;
      let labels = durationLabels.get(key);
      if (!labels) {
        labels = { queue, name: nameLabel(name) };
        durationLabels.set(key, labels);
      }
      jobDuration.observe(labels, seconds);
    },
  };
}

/** Reads the job counts of `queues` and sets `lms_queue_jobs` from them. */
export async function sampleQueueDepths(metrics: WorkerMetrics, queues: Map<QueueName, Queue>): Promise<void> {
  await Promise.all(
    [...queues].map(async ([name, queue]) => {
      const counts = await queue.getJobCounts(...sampledStates, 'prioritized');
      for (const state of sampledStates) {
        // Prioritised jobs wait too, in a set of their own.
        const value = (counts[state] ?? 0) + (state === 'waiting' ? (counts.prioritized ?? 0) : 0);
        metrics.queueJobs.set({ queue: name, state }, value);
      }
    }),
  );
}

/** Reads the outbox backlog (from PostgreSQL, so it is known while Redis is down) into its gauges. */
export async function sampleOutbox(metrics: WorkerMetrics, db: Queryable): Promise<void> {
  const { unsent, oldestAgeSeconds } = await outboxBacklog(db);
  metrics.outboxDepth.set(unsent);
  metrics.outboxOldestAge.set(oldestAgeSeconds);
}
