import type { Worker } from 'bullmq';
import { errorMessage, ThrottledLog, type Logger } from '@lms/core';

/** What the worker's /health says about Redis. */
export type RedisState = 'ok' | 'unreachable' | 'backing off';

export interface RedisGuardSettings {
  /** Command errors within `windowMs` that make the workers stop taking jobs for a while. */
  errorThreshold: number;
  windowMs: number;
  /** The first pause; it doubles while Redis keeps failing, up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** How often Redis is probed while all is well (the answer /health gives in between). */
  probeIntervalMs: number;
  /** A probe not answered within this long failed. */
  probeTimeoutMs: number;
}

export const defaultRedisGuardSettings: RedisGuardSettings = {
  errorThreshold: 10,
  windowMs: 5000,
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
  probeIntervalMs: 5000,
  probeTimeoutMs: 2000,
};

export interface RedisGuard {
  /** An error a queue worker reported. */
  onError(error: Error, queue: string): void;
  state(): RedisState;
  /** Settles once the first probe has answered or failed. */
  readonly checked: Promise<void>;
  /** Stops probing; workers it paused stay paused (they are being closed). */
  stop(): void;
}

// Lost connections: ioredis reconnects them on its own schedule and BullMQ waits, so they call
// for no pause of ours, only for a line in the log now and then.
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const CONNECTION_MESSAGES =
  /Connection is closed|Stream isn't writeable|Socket closed unexpectedly|Connection timeout|Failed to refresh slots cache|None of startup nodes is available/i;

function isConnectionError(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return (code !== undefined && CONNECTION_CODES.has(code)) || CONNECTION_MESSAGES.test(error.message);
}

/** What the throttled log groups errors by: the errno code, or Redis' error word (MOVED, OOM, READONLY…). */
function errorKind(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === 'string') return code;
  return /^[A-Z]{2,}\b/.exec(error.message)?.[0] ?? 'other';
}

/** `work`, or a rejection once `ms` have passed. */
async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  work.catch(() => undefined);
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Watches the Redis of the queue workers. Every error they report is logged, at most one line per
 * kind a minute. When commands keep failing while the connection stands (a Redis that answers
 * MOVED, OOM, READONLY or CLUSTERDOWN to everything), BullMQ retries them within milliseconds, so
 * the workers are paused instead and tried again after a pause that doubles while Redis still
 * fails its probe (1 s up to 30 s). The probe — a read of a queue's key, so a node that does not
 * serve the queues' slot fails it — also runs every few seconds, and /health reports its answer.
 */
export function startRedisGuard(options: {
  workers: readonly Worker[];
  /** A command on the queues' Redis (resolves when it answers). */
  probe: () => Promise<unknown>;
  logger: Logger;
  settings?: Partial<RedisGuardSettings>;
}): RedisGuard {
  const settings = { ...defaultRedisGuardSettings, ...options.settings };
  const { logger } = options;
  const log = new ThrottledLog(logger);
  let stopped = false;
  let reachable = true;
  let backingOff = false;
  let backoffMs = settings.initialBackoffMs;
  let lastResumedAt = 0;
  const recentErrors: number[] = [];
  // The probe loop and a back-off may both be waiting; a stop ends both waits.
  const sleeping = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          sleeping.delete(entry);
          resolve();
        }, ms),
        wake: resolve,
      };
      sleeping.add(entry);
    });

  /** Probes once and records the answer; true when Redis answered. */
  const probe = async (): Promise<boolean> => {
    try {
      await within(settings.probeTimeoutMs, options.probe());
      if (!reachable) logger.info('Redis answers again');
      reachable = true;
      return true;
    } catch (error) {
      if (reachable && !stopped) {
        logger.warn({ err: error }, `Redis does not answer (${errorMessage(error)}): /health fails until it does`);
      }
      reachable = false;
      return false;
    }
  };

  const backOff = async (last: Error) => {
    backingOff = true;
    recentErrors.length = 0;
    // Quiet for a good while since the last pause: start small again.
    if (Date.now() - lastResumedAt > 2 * settings.maxBackoffMs) backoffMs = settings.initialBackoffMs;
    logger.warn(
      { err: last, pauseMs: backoffMs },
      `Redis keeps failing (${settings.errorThreshold} errors within ${settings.windowMs / 1000} s, the last: ${errorMessage(last)}): the workers stop taking jobs and try again in ${backoffMs / 1000} s`,
    );
    await Promise.all(options.workers.map((worker) => worker.pause(true).catch(() => undefined)));
    for (;;) {
      await sleep(backoffMs);
      if (stopped) return;
      const answered = await probe();
      if (stopped) return;
      // The next pause is longer, also when this one ends: errors right after a resume mean the
      // probe passes while the workers' commands still fail.
      backoffMs = Math.min(backoffMs * 2, settings.maxBackoffMs);
      if (answered) break;
      log.warn('still failing', {}, `Redis still fails: the workers try again in ${backoffMs / 1000} s`);
    }
    backingOff = false;
    lastResumedAt = Date.now();
    await Promise.all(options.workers.map((worker) => worker.resume().catch(() => undefined)));
    logger.info('Redis answers: the workers take jobs again');
  };

  const checked = (async () => {
    await probe();
    const loop = async () => {
      while (!stopped) {
        await sleep(settings.probeIntervalMs);
        if (!stopped && !backingOff) await probe();
      }
    };
    void loop();
  })();

  return {
    onError(error, queue) {
      if (stopped) return;
      log.error(errorKind(error), { err: error, queue }, `worker error: ${error.message}`);
      if (backingOff || isConnectionError(error)) return;
      const now = Date.now();
      recentErrors.push(now);
      while (recentErrors.length > 0 && recentErrors[0]! <= now - settings.windowMs) recentErrors.shift();
      if (recentErrors.length >= settings.errorThreshold) {
        backOff(error).catch((failure: unknown) =>
          logger.error({ err: failure }, `backing off from Redis failed: ${errorMessage(failure)}`),
        );
      }
    },
    state: () => (backingOff ? 'backing off' : reachable ? 'ok' : 'unreachable'),
    checked,
    stop() {
      stopped = true;
      for (const entry of sleeping) {
        clearTimeout(entry.timer);
        entry.wake();
      }
      sleeping.clear();
    },
  };
}
