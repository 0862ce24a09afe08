import type { Redis } from 'ioredis';
import type { Logger } from '@lms/core';
import { within } from '../lib/within.js';

/** How long a marker lookup or update may wait for Redis before the answer counts as unknown. */
const REDIS_WAIT_MS = 500;
/** Users remembered in this process at most; the oldest marks make room. */
const LOCAL_MAX_USERS = 10_000;

/**
 * When each user last wrote, for read-your-writes on a read replica. The request of one user
 * may land on any API process, so the mark lives in Redis (one key per user, expiring after
 * `keepMs`), and in this process's memory as well, which answers without a Redis trip and keeps
 * working for this process's own writes while Redis is down.
 */
export class RecentWrites {
  /** user id → when they last wrote (ms); in insertion order, oldest first. */
  private readonly local = new Map<string, number>();

  constructor(
    /** The API's command connection (a Redis or a Cluster client: one key per call). */
    private readonly redis: Pick<Redis, 'get' | 'set'>,
    private readonly prefix: string,
    /** How long a write is remembered: long enough for every question `wroteSince` is asked. */
    private readonly keepMs: number,
    private readonly logger: Logger,
  ) {}

  private key(userId: string): string {
    return `${this.prefix}replica:wrote:${userId}`;
  }

  /**
   * Records that the user is about to write. Called before the write runs, so the mark exists
   * before the response leaves; a mark Redis refuses is still kept in this process.
   */
  async mark(userId: string): Promise<void> {
    const now = Date.now();
    this.local.delete(userId);
    if (this.local.size >= LOCAL_MAX_USERS) this.local.delete(this.local.keys().next().value!);
    this.local.set(userId, now);
    try {
      await within(
        REDIS_WAIT_MS,
        this.redis.set(this.key(userId), String(now), 'PX', this.keepMs),
        'Redis did not answer',
      );
    } catch (error) {
      this.logger.debug({ err: error }, 'read-your-writes mark not stored in Redis; this process keeps it');
    }
  }

  /**
   * Whether the user wrote at or after `since` (ms), as far as any API process knows. When Redis
   * cannot answer, the answer is yes: another process may have recorded a write, and that user
   * must not be sent to a replica that may not have it (the primary serves them meanwhile).
   */
  async wroteSince(userId: string, since: number): Promise<boolean> {
    const here = this.local.get(userId);
    if (here !== undefined && here >= since) return true;
    try {
      const shared = await within(REDIS_WAIT_MS, this.redis.get(this.key(userId)), 'Redis did not answer');
      return shared !== null && Number(shared) >= since;
    } catch {
      return true;
    }
  }
}
