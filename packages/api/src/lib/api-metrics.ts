import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** The caches of the API (courses.cache.ts). */
export const cacheNames = ['course', 'catalogue'] as const;

/**
 * What a cache lookup found: `local_hit` in this process's memory, `hit` in Redis, `miss` (read
 * from the database), `error` (Redis failed; read from the database). Both hits count as hits.
 */
export const cacheResults = ['local_hit', 'hit', 'miss', 'error'] as const;

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
  }
}
