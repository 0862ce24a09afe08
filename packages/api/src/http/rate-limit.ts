import { once } from 'node:events';
import type { Request, Response } from 'express';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError, errorMessage, ThrottledLog, type Config, type Logger } from '@lms/core';
import type { RedisClient } from '@lms/core/redis-client';
import type { ApiMetrics } from '../lib/api-metrics.js';
import { clientAddress } from './client-address.js';

export class RateLimitedError extends AppError {
  constructor(readonly retryAfterSeconds: number) {
    super(`too many requests; try again in ${retryAfterSeconds} s`, { status: 429, code: 'rate_limited' });
  }
}

/** Where the limits are counted: in Redis for every API process, in each process's memory, or not at all. */
export type RateLimitMode = 'shared' | 'per-process' | 'off';

export interface RateLimits {
  perIp(req: Request, res: Response): Promise<void>;
  perUser(req: Request, res: Response, userId: string): Promise<void>;
  auth(req: Request, res: Response): Promise<void>;
  /**
   * Whether a request would be counted in Redis now: a write that counts nothing, through the
   * same store and script as every request (`/ready` reports `per-process` when it fails).
   */
  mode(timeoutMs: number): Promise<RateLimitMode>;
}

type LimitConfig = Pick<
  Config,
  'RATE_LIMIT_ENABLED' | 'RATE_LIMIT_PER_MINUTE' | 'RATE_LIMIT_USER_PER_MINUTE' | 'RATE_LIMIT_AUTH_PER_MINUTE'
>;

/** A client key as a hash tag: in a Redis Cluster each client's counter lands on its own slot, spreading them over the shards. */
const tagged = (key: string) => `{${key}}`;

/**
 * The API's limits: per client IP, per signed-in user, and the strict one on login and
 * registration. Each is counted in Redis, so it holds across every API process. When Redis
 * cannot count a request (down, out of memory, a cluster slot without its master), an in-memory
 * limiter of the same size counts it instead — in this process only, so N processes then let N
 * times the limit through; the API keeps serving and keeps some brute-force protection. Each
 * such request is counted in `lms_redis_write_failures_total{use="rate_limit"}` and logged (at
 * most a line a minute).
 */
export function createRateLimits(
  redis: RedisClient,
  config: LimitConfig,
  prefix: string,
  observe: { metrics: ApiMetrics; logger: Logger },
): RateLimits {
  if (!config.RATE_LIMIT_ENABLED) {
    const none = () => Promise.resolve();
    return { perIp: none, perUser: none, auth: none, mode: () => Promise.resolve('off') };
  }
  const log = new ThrottledLog(observe.logger);
  const limiter = (name: string, points: number) => ({
    name,
    shared: new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${prefix}rl:${name}`,
      points,
      duration: 60,
      // Refuse at once while disconnected instead of waiting: the memory limiter answers then.
      rejectIfRedisNotReady: true,
    }),
    local: new RateLimiterMemory({ keyPrefix: `${prefix}rl:${name}`, points, duration: 60 }),
  });
  const ip = limiter('ip', config.RATE_LIMIT_PER_MINUTE);
  const user = limiter('user', config.RATE_LIMIT_USER_PER_MINUTE);
  const auth = limiter('auth', config.RATE_LIMIT_AUTH_PER_MINUTE);

  const count = async (which: typeof ip, key: string) => {
    try {
      await which.shared.consume(tagged(key));
      return;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) throw rejection;
      observe.metrics.redisWriteFailures.inc({ use: 'rate_limit' });
      log.warn(
        'rate limit',
        { err: rejection, limit: which.name },
        `rate limits are counted per process: Redis did not count a request (${errorMessage(rejection)})`,
      );
    }
    await which.local.consume(key);
  };
  const consume = async (which: typeof ip, key: string, res: Response) => {
    try {
      await count(which, key);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      const seconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      res.setHeader('Retry-After', String(seconds));
      throw new RateLimitedError(seconds);
    }
  };
  return {
    perIp: (req, res) => consume(ip, clientAddress(req) ?? 'unknown', res),
    perUser: (_req, res, userId) => consume(user, userId, res),
    auth: (req, res) => consume(auth, clientAddress(req) ?? 'unknown', res),
    async mode(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          (async () => {
            // A connection still in its handshake (just started, or reconnecting) answers a
            // PING but not yet the limiter (rejectIfRedisNotReady): wait for it within the
            // timeout rather than report per-process limits that last milliseconds.
            if (redis.status === 'connect') await once(redis, 'ready');
            // Zero points: the counter's script runs (a write), nothing is counted.
            await ip.shared.consume(tagged('ready-probe'), 0);
          })(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('no answer')), timeoutMs);
          }),
        ]);
        return 'shared';
      } catch {
        return 'per-process';
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
