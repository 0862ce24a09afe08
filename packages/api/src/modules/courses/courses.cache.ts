import { errorMessage, ThrottledLog, type Logger } from '@lms/core';
import type { RedisClient } from '@lms/core/redis-client';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import type { Page } from '../../lib/pagination.js';
import type { PresentedCourse } from './courses.presenter.js';

/** A cached value with its JSON text, so a hit is sent without serialising it again. */
export interface Cached<T> {
  value: T;
  json: string;
}

/** How long an entry may live in a process before it is read from Redis again. */
const LOCAL_TTL_MS = 5000;
const LOCAL_MAX_ENTRIES = 10_000;

/**
 * Two-level cache of published course details and catalogue pages: each API process keeps hot
 * entries in memory for a few seconds, in front of Redis (shared by all processes, TTL
 * CACHE_TTL_SECONDS). Every write to a course deletes its Redis entry, bumps the catalogue
 * version and tells every process, over Redis pub/sub, to drop its copies. A Redis failure is a
 * cache miss, never an error: reads fall back to the database. A write that fails is counted in
 * `lms_redis_write_failures_total{use="cache"}` and logged (at most a line a minute).
 *
 * Keys carry hash tags for Redis Cluster: a course's detail is tagged with its id (the details
 * spread over the shards), the catalogue version and pages share the tag `catalogue`.
 */
export class CourseCache {
  private readonly local = new Map<string, Cached<unknown> & { expires: number }>();
  private readonly log: ThrottledLog;

  constructor(
    private readonly redis: RedisClient,
    /** A second connection in subscriber mode, for invalidations from other processes. */
    subscriber: RedisClient | null,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly metrics: ApiMetrics,
    logger: Logger,
  ) {
    this.log = new ThrottledLog(logger);
    if (subscriber) {
      subscriber.subscribe(this.channel).catch(() => undefined);
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === this.channel) this.dropLocal(message);
      });
    }
  }

  private get channel(): string {
    return `${this.prefix}cache:invalidations`;
  }

  private courseKey(id: string): string {
    return `${this.prefix}cache:course:{${id}}`;
  }

  private get versionKey(): string {
    return `${this.prefix}cache:{catalogue}:version`;
  }

  /** A published course from the cache, else from `load` (cached when published). */
  async course(id: string, load: () => Promise<PresentedCourse | null>): Promise<Cached<PresentedCourse> | null> {
    const localKey = `course:${id}`;
    const hot = this.fromLocal<PresentedCourse>(localKey, 'course');
    if (hot) return hot;
    const cached = await this.read(this.courseKey(id), 'course');
    if (cached) return this.keep(localKey, JSON.parse(cached) as PresentedCourse, cached);
    const course = await load();
    if (!course) return null;
    const json = JSON.stringify(course);
    if (course.status !== 'published') return { value: course, json };
    await this.write(this.courseKey(id), json);
    return this.keep(localKey, course, json);
  }

  async catalogue(
    limit: number,
    cursor: string | undefined,
    load: () => Promise<Page<PresentedCourse>>,
  ): Promise<Cached<Page<PresentedCourse>>> {
    const localKey = `catalogue:${limit}:${cursor ?? ''}`;
    const hot = this.fromLocal<Page<PresentedCourse>>(localKey, 'catalogue');
    if (hot) return hot;
    let key: string | null = null;
    try {
      const version = (await this.redis.get(this.versionKey)) ?? '0';
      key = `${this.prefix}cache:{catalogue}:${version}:${limit}:${cursor ?? ''}`;
    } catch {
      this.metrics.cacheRequests.inc({ cache: 'catalogue', result: 'error' });
    }
    const cached = key ? await this.read(key, 'catalogue') : null;
    if (cached) return this.keep(localKey, JSON.parse(cached) as Page<PresentedCourse>, cached);
    const page = await load();
    const json = JSON.stringify(page);
    if (key) {
      await this.write(key, json);
      return this.keep(localKey, page, json);
    }
    return { value: page, json };
  }

  /** After any change to a course (or its publication): drop its detail and every catalogue page, everywhere. */
  async invalidate(id: string): Promise<void> {
    this.dropLocal(`course:${id}`);
    try {
      // Two slots in a cluster (the course's, the catalogue's): two commands, then the news.
      await Promise.all([this.redis.del(this.courseKey(id)), this.redis.incr(this.versionKey)]);
      await this.redis.publish(this.channel, `course:${id}`);
    } catch (error) {
      // The entries expire after their TTLs; nothing else can be done while Redis fails.
      this.writeFailed(error, 'invalidation not stored: other processes serve cached entries until their TTL');
    }
  }

  /** Drops one course's local copy and, since any course change can alter them, every catalogue page. */
  private dropLocal(message: string): void {
    this.local.delete(message);
    for (const key of this.local.keys()) if (key.startsWith('catalogue:')) this.local.delete(key);
  }

  private fromLocal<T>(key: string, cache: 'course' | 'catalogue'): Cached<T> | null {
    const entry = this.local.get(key);
    if (!entry) return null;
    if (entry.expires <= Date.now()) {
      this.local.delete(key);
      return null;
    }
    this.metrics.cacheRequests.inc({ cache, result: 'local_hit' });
    return entry as Cached<T>;
  }

  private keep<T>(key: string, value: T, json: string): Cached<T> {
    // A bounded map: when full, the oldest entry (first inserted) makes room.
    if (this.local.size >= LOCAL_MAX_ENTRIES) this.local.delete(this.local.keys().next().value!);
    this.local.set(key, { value, json, expires: Date.now() + Math.min(LOCAL_TTL_MS, this.ttlSeconds * 1000) });
    return { value, json };
  }

  private async read(key: string, cache: 'course' | 'catalogue'): Promise<string | null> {
    try {
      const value = await this.redis.get(key);
      this.metrics.cacheRequests.inc({ cache, result: value === null ? 'miss' : 'hit' });
      return value;
    } catch {
      this.metrics.cacheRequests.inc({ cache, result: 'error' });
      return null;
    }
  }

  private async write(key: string, value: string): Promise<void> {
    try {
      await this.redis.set(key, value, 'EX', this.ttlSeconds);
    } catch (error) {
      // A cache that cannot be written is only a slower cache, but it should not be so silently.
      this.writeFailed(error, 'entry not stored: reads go to the database');
    }
  }

  private writeFailed(error: unknown, consequence: string): void {
    this.metrics.redisWriteFailures.inc({ use: 'cache' });
    this.log.warn(
      'cache write',
      { err: error },
      `cache write to Redis failed (${errorMessage(error)}); ${consequence}`,
    );
  }
}
