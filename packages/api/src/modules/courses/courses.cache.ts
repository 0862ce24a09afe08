import type { Redis } from 'ioredis';
import type { ApiMetrics } from '../../http/metrics.js';
import type { Page } from '../../http/pagination.js';
import type { PresentedCourse } from './courses.presenter.js';

/**
 * Redis cache of published course details and catalogue pages. Every write to a course deletes
 * its detail and bumps the catalogue version (old pages are then never read again and expire).
 * A Redis failure is a cache miss, never an error: reads fall back to the database.
 */
export class CourseCache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly metrics: ApiMetrics,
  ) {}

  private courseKey(id: string): string {
    return `${this.prefix}cache:course:${id}`;
  }

  private get versionKey(): string {
    return `${this.prefix}cache:catalogue:version`;
  }

  /** A published course from the cache, else from `load` (cached when published). */
  async course(id: string, load: () => Promise<PresentedCourse | null>): Promise<PresentedCourse | null> {
    const cached = await this.read(this.courseKey(id), 'course');
    if (cached) return JSON.parse(cached) as PresentedCourse;
    const course = await load();
    if (course?.status === 'published') await this.write(this.courseKey(id), JSON.stringify(course));
    return course;
  }

  async catalogue(
    limit: number,
    cursor: string | undefined,
    load: () => Promise<Page<PresentedCourse>>,
  ): Promise<Page<PresentedCourse>> {
    let key: string | null = null;
    try {
      const version = (await this.redis.get(this.versionKey)) ?? '0';
      key = `${this.prefix}cache:catalogue:${version}:${limit}:${cursor ?? ''}`;
    } catch {
      this.metrics.cacheRequests.inc({ cache: 'catalogue', result: 'error' });
    }
    const cached = key ? await this.read(key, 'catalogue') : null;
    if (cached) return JSON.parse(cached) as Page<PresentedCourse>;
    const page = await load();
    if (key) await this.write(key, JSON.stringify(page));
    return page;
  }

  /** After any change to a course (or its publication): drop its detail and every catalogue page. */
  async invalidate(id: string): Promise<void> {
    try {
      await this.redis.multi().del(this.courseKey(id)).incr(this.versionKey).exec();
    } catch {
      // The entries expire after the TTL; nothing else can be done while Redis is down.
      this.metrics.cacheRequests.inc({ cache: 'course', result: 'error' });
    }
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
    } catch {
      // A cache that cannot be written is only a slower cache.
    }
  }
}
