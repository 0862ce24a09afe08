import type { NextFunction, Request, Response } from 'express';
import type { ApiMetrics } from '../lib/api-metrics.js';

/** The route pattern a request matched (`/api/v1/courses/:id`), or `unmatched`. */
export function routePatternOf(req: Request): string {
  return req.route ? `${req.baseUrl}${String((req.route as { path: string }).path)}` : 'unmatched';
}

/**
 * Counts and times every request under its route pattern (`/api/v1/courses/:id`, never the raw
 * URL, which would explode the label set); requests no route matched count as `unmatched`.
 */
export function httpMetrics(metrics: ApiMetrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const stop = metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const labels = { method: req.method, route: routePatternOf(req), status_code: String(res.statusCode) };
      metrics.httpRequests.inc(labels);
      stop(labels);
    });
    next();
  };
}
