import type { Express, Request, Response } from 'express';
import { pingDatabase } from '@lms/core';
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

/** How long readiness waits for each dependency. */
const READY_TIMEOUT_MS = 1000;

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
    // The reason goes to the log only: a public body naming driver errors (addresses, ports,
    // server messages) tells an outsider about the network behind the API.
    const check = async (name: string, work: () => Promise<unknown>) => {
      try {
        await work();
        return 'ok';
      } catch (error) {
        deps.logger.warn({ err: error, dependency: name }, 'readiness check failed');
        return 'unavailable';
      }
    };
    const { DATABASE_URL } = deps.config;
    const [database, redis] = await Promise.all([
      // A connection of its own, not the pool's: while PostgreSQL hangs, the probe neither waits
      // behind the requests for a pool connection nor keeps one busy after giving up.
      check('database', async () => {
        if (!DATABASE_URL) throw new Error('DATABASE_URL is not set');
        await pingDatabase(DATABASE_URL, { applicationName: 'lms-api ready', timeoutMs: READY_TIMEOUT_MS });
      }),
      check('redis', () => within(READY_TIMEOUT_MS, deps.redis.ping())),
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
