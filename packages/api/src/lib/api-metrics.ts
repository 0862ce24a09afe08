import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The caches of the API (courses.cache.ts). */
export const cacheNames = ['course', 'catalogue'] as const;

/**
 * What a cache lookup found: `local_hit` in this process's memory, `hit` in Redis, `miss` (read
 * from the database), `error` (Redis failed; read from the database). Both hits count as hits.
 */
export const cacheResults = ['local_hit', 'hit', 'miss', 'error'] as const;

/** What the API writes to Redis besides the token deny-list (whose failures are logged each time). */
export const redisWriteUses = ['cache', 'rate_limit'] as const;

/**
 * prom-client's defaults that `promtool check metrics` refuses: gauges named `_total`, which the
 * exposition format keeps for counters. Each is the sum of a gauge it also exports by type
 * (`nodejs_active_handles{type}`, `nodejs_active_requests{type}`, `nodejs_active_resources{type}`),
 * so nothing is lost: `sum(nodejs_active_handles)` is the same number.
 */
export const nonConformingDefaultMetrics = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/**
 * Why a read meant for the read replica was served by the primary: `unavailable` (the replica
 * failed or does not answer its checks: the circuit breaker is open), `lagging` (beyond
 * REPLICA_MAX_LAG_SECONDS), `conflict` (the replica cancelled the statement for replay, or has
 * not replayed the migration it needs yet).
 */
export const replicaFallbackReasons = ['unavailable', 'lagging', 'conflict'] as const;

/**
 * The API's Prometheus metrics, with the names the alert rules and dashboards use. One registry
 * per process; with several API processes the cluster primary aggregates them (main.ts).
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly cacheRequests = new Counter({
    name: 'lms_cache_requests_total',
    help: `Cache lookups by cache and result (${cacheResults.join(', ')}).`,
    labelNames: ['cache', 'result'] as const,
    registers: [this.registry],
  });
  readonly redisWriteFailures = new Counter({
    name: 'lms_redis_write_failures_total',
    help: `Writes to Redis that failed, by use (${redisWriteUses.join(', ')}): a cache entry or invalidation not stored (entries then live to their TTL), a request counted by this process alone (per-process rate limits).`,
    labelNames: ['use'] as const,
    registers: [this.registry],
  });
  readonly replicaLag = new Gauge({
    name: 'lms_db_replica_lag_seconds',
    help: "How far the read replica's data is behind the primary, by server (host:port of DATABASE_READ_URL; no series without one): measured every REPLICA_CHECK_INTERVAL_SECONDS; while the replica does not answer, the time since it was last known to be complete.",
    labelNames: ['server'] as const,
    // With several API processes each measures the same replica: the aggregate is the worst.
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly replicaFallbacks = new Counter({
    name: 'lms_db_replica_fallbacks_total',
    help: `Reads meant for the read replica that the primary served, by reason (${replicaFallbackReasons.join(', ')}).`,
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly enrollments = new Counter({
    name: 'lms_enrollments_total',
    help: 'New enrolments.',
    registers: [this.registry],
  });
  readonly registrations = new Counter({
    name: 'lms_registrations_total',
    help: 'New accounts.',
    registers: [this.registry],
  });
  readonly lessonCompletions = new Counter({
    name: 'lms_lesson_completions_total',
    help: 'Lessons marked complete (first time per enrolment).',
    registers: [this.registry],
  });
  readonly quizAttempts = new Counter({
    name: 'lms_quiz_attempts_total',
    help: 'Quiz attempts by outcome.',
    labelNames: ['passed'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    for (const name of nonConformingDefaultMetrics) this.registry.removeSingleMetric(name);
    // Every series starts at 0: rate() cannot see the step from "absent" to 1, so a result's first
    // lookups would be missing from the hit ratio, and a cache with no hits yet would have no ratio.
    for (const cache of cacheNames) for (const result of cacheResults) this.cacheRequests.inc({ cache, result }, 0);
    for (const reason of replicaFallbackReasons) this.replicaFallbacks.inc({ reason }, 0);
    for (const use of redisWriteUses) this.redisWriteFailures.inc({ use }, 0);
  }
}
