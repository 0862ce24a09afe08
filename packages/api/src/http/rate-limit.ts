import type { Request, Response } from 'express';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError, type Config } from '@lms/core';
import { clientAddress } from './client-address.js';

export class RateLimitedError extends AppError {
  constructor(readonly retryAfterSeconds: number) {
    super(`too many requests; try again in ${retryAfterSeconds} s`, { status: 429, code: 'rate_limited' });
  }
}

/**
 * One limit counted in Redis, so it holds across every API process sharing it. While Redis is
 * down an in-memory limiter of the same size takes over (per process), so the API keeps serving
 * and keeps its brute-force protection.
 */
function limiter(redis: Redis, keyPrefix: string, points: number): RateLimiterAbstract {
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration: 60,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ keyPrefix: `${keyPrefix}:memory`, points, duration: 60 }),
  });
}

export interface RateLimits {
  perIp(req: Request, res: Response): Promise<void>;
  perUser(req: Request, res: Response, userId: string): Promise<void>;
  auth(req: Request, res: Response): Promise<void>;
}

type LimitConfig = Pick<
  Config,
  'RATE_LIMIT_ENABLED' | 'RATE_LIMIT_PER_MINUTE' | 'RATE_LIMIT_USER_PER_MINUTE' | 'RATE_LIMIT_AUTH_PER_MINUTE'
>;

/** The API's limits: per client IP, per signed-in user, and the strict one on login and registration. */
export function createRateLimits(redis: Redis, config: LimitConfig, prefix: string): RateLimits {
  if (!config.RATE_LIMIT_ENABLED) {
    const none = () => Promise.resolve();
    return { perIp: none, perUser: none, auth: none };
  }
  const ip = limiter(redis, `${prefix}rl:ip`, config.RATE_LIMIT_PER_MINUTE);
  const user = limiter(redis, `${prefix}rl:user`, config.RATE_LIMIT_USER_PER_MINUTE);
  const auth = limiter(redis, `${prefix}rl:auth`, config.RATE_LIMIT_AUTH_PER_MINUTE);
  const consume = async (which: RateLimiterAbstract, key: string, res: Response) => {
    try {
      await which.consume(key);
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
  };
}
