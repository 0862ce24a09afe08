import type { Express, Request, Response } from 'express';
import { pingDatabase } from '@lms/core';
import { pingRedis } from '@lms/core/redis-client';
import type { Deps } from '../../deps.js';
import type { RateLimits } from '../../http/rate-limit.js';

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
 * Liveness (`/health`, no dependencies), readiness (`/ready`: can this instance serve requests)
 * and the Prometheus metrics. Mounted before the rate limits, so probes and scrapes are never
 * throttled.
 *
 * Readiness answers 503 only when PostgreSQL does not answer within 1 s: nothing can be served
 * then. Without Redis the API still serves (the cache, rate limits and token deny-list fall back,
 * jobs wait in the outbox), so `/ready` answers 200 with `status: "degraded"`: Caddy takes an
 * instance that answers 503 out of rotation, and every instance loses the same Redis at once, so
 * a 503 here would turn a Redis outage into an outage of the whole site.
 *
 * With a read replica (DATABASE_READ_URL) `checks.replica` says `ok`, `lagging` (beyond
 * REPLICA_MAX_LAG_SECONDS) or `unavailable`, from the replica checks every process runs anyway;
 * anything but `ok` is `degraded`, never 503: the primary serves the replica's reads meanwhile.
 *
 * `checks.rateLimits: "per-process"` (also `degraded`) says Redis cannot count requests now, so
 * each API process limits on its own and N processes let N times the limits through. `redis`
 * pings the server, or every master of a Redis Cluster.
 */
export function mountSystemRoutes(
  app: Express,
  deps: Deps,
  metrics: MetricsSource,
  limits: Pick<RateLimits, 'mode'>,
): void {
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
    const [database, redis, replica, rateLimits] = await Promise.all([
      // A connection of its own, not the pool's: while PostgreSQL hangs, the probe neither waits
      // behind the requests for a pool connection nor keeps one busy after giving up.
      check('database', async () => {
        if (!DATABASE_URL) throw new Error('DATABASE_URL is not set');
        await pingDatabase(DATABASE_URL, { applicationName: 'lms-api ready', timeoutMs: READY_TIMEOUT_MS });
      }),
      check('redis', () => within(READY_TIMEOUT_MS, pingRedis(deps.redis))),
      deps.db.read.condition(),
      limits.mode(READY_TIMEOUT_MS),
    ]);
    const checks = {
      database,
      redis,
      ...(replica ? { replica: replica.condition } : {}),
      ...(rateLimits === 'per-process' ? { rateLimits } : {}),
    };
    const status =
      database !== 'ok' ? 'not ready' : Object.values(checks).some((c) => c !== 'ok') ? 'degraded' : 'ready';
    res.status(status === 'not ready' ? 503 : 200).json({ status, checks });
  });

  app.get(deps.config.METRICS_PATH, async (_req: Request, res: Response) => {
    const { contentType, text } = await metrics();
    res.type(contentType).send(text);
  });
}
