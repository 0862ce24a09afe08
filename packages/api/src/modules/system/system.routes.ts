import type { Express, Request, Response } from 'express';
import { errorMessage } from '@lms/core';
import type { Deps } from '../../deps.js';

/** Resolves with `work`'s outcome, or rejects after `ms`. */
async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface MetricsSource {
  (): Promise<{ contentType: string; text: string }>;
}

/**
 * Liveness (`/health`, no dependencies), readiness (`/ready`: PostgreSQL and Redis answer within
 * 1 s, else 503 naming which) and the Prometheus metrics. Mounted before the rate limits, so
 * probes and scrapes are never throttled.
 */
export function mountSystemRoutes(app: Express, deps: Deps, metrics: MetricsSource): void {
  app.get('/health', (_req: Request, res: Response) => {
    res.json({ status: 'ok' });
  });

  app.get('/ready', async (_req: Request, res: Response) => {
    const check = async (work: () => Promise<unknown>) => {
      try {
        await within(1000, work());
        return 'ok';
      } catch (error) {
        return `unavailable: ${errorMessage(error)}`;
      }
    };
    const [database, redis] = await Promise.all([
      check(() => deps.db.primary.query('SELECT 1')),
      check(() => deps.redis.ping()),
    ]);
    const ready = database === 'ok' && redis === 'ok';
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not ready',
      checks: { database, redis },
      // Reads keep working without Redis; writes that queue jobs and the rate limits degrade.
      ...(database === 'ok' && redis !== 'ok'
        ? { degraded: 'Redis is down: reads are served, caching and queued work are not' }
        : {}),
    });
  });

  app.get(deps.config.METRICS_PATH, async (_req: Request, res: Response) => {
    const { contentType, text } = await metrics();
    res.type(contentType).send(text);
  });
}
