import type { NextFunction, Request, Response } from 'express';
import type { ApiMetrics } from '../lib/api-metrics.js';

/** The route pattern a request matched (`/api/v1/courses/:id`), or `unmatched`. */
export function routePatternOf(req: Request): string {
  return req.route ? `${req.baseUrl}${String((req.route as { path: string }).path)}` : 'unmatched';
}

/**
 * Counts and times every user request under its route pattern (`/api/v1/courses/:id`, never the
 * raw URL, which would explode the label set); requests no route matched count as `unmatched`.
 *
 * The routes in `probes` (liveness, readiness, the metrics scrape) are not counted at all:
 * `http_requests_total` and `http_request_duration_seconds` are what users get, and the alerts,
 * dashboards and `lmsctl check` read them as that with no filter of their own. Counted, a load
 * balancer's readiness probes answering 503 while Redis was down paged HighErrorRate with no user
 * request failing, and on a quiet API the scrapes diluted the share of 5xx the other way.
 */
export function httpMetrics(metrics: ApiMetrics, options: { probes: ReadonlySet<string> }) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const stop = metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const route = routePatternOf(req);
      if (options.probes.has(route)) return;
      const labels = { method: req.method, route, status_code: String(res.statusCode) };
      metrics.httpRequests.inc(labels);
      stop(labels);
    });
    next();
  };
}
