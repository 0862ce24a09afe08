import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

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
    help: 'Cache lookups by cache and result (hit, miss, error).',
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
  }
}
