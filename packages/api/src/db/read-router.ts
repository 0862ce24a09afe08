import pg from 'pg';
import {
  describePostgresUrl,
  isDatabaseUnavailable,
  isQueryTimeout,
  measureReplica,
  type Config,
  type Logger,
  type QueryResultRow,
  type ReplicaState,
} from '@lms/core';
import type { ApiMetrics } from '../lib/api-metrics.js';
import { within } from '../lib/within.js';
import type { RecentWrites } from './recent-writes.js';

/** What `/ready` and the logs say about the replica. */
export type ReplicaCondition = 'ok' | 'lagging' | 'unavailable';

/**
 * How long one check may take (connect, two trivial queries). Checks never overlap: the next is
 * scheduled when one ends.
 */
const CHECK_TIMEOUT_MS = 2000;

/**
 * Clocks of the API hosts may differ this much: a write marked on one host is compared with
 * replay times measured on another.
 */
const CLOCK_SKEW_MS = 1000;

type ReplicaSettings = Pick<
  Config,
  'REPLICA_MAX_LAG_SECONDS' | 'REPLICA_READ_YOUR_WRITES_SECONDS' | 'REPLICA_CHECK_INTERVAL_SECONDS'
>;

/** Reads that may be a few seconds old: the replica's, when it can serve them. */
export interface LaggingReads {
  /**
   * Runs a read-only statement on the replica when it answers, is within REPLICA_MAX_LAG_SECONDS
   * and `reader` (the user the read is for; null for anonymous reads) has no write it may lack;
   * on the primary otherwise.
   */
  query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    params: unknown[],
    reader: string | null,
  ): Promise<pg.QueryResult<R>>;
}

/** The replica's side of a failed read: how the router reacts to it. */
type ReplicaFailure =
  /** Refused, reset, shut down, not accepting connections: open the breaker, retry on the primary at once. */
  | 'down'
  /** No answer within the timeouts: open the breaker; the request already used its time, so it fails (503). */
  | 'silent'
  /** Replay cancelled the statement, or it names what the replica has not replayed yet: the primary can answer. */
  | 'conflict'
  /** The statement itself is wrong: the primary would refuse it too. */
  | 'statement';

/** SQLSTATEs a standby returns where the primary would succeed. */
const CONFLICT_SQLSTATES = new Set([
  // Recovery conflicts: "canceling statement due to conflict with recovery".
  '40001',
  '40P01',
  // A migration the replica has not replayed yet: undefined table, column, function, object.
  '42P01',
  '42703',
  '42883',
  '42704',
]);

/** Connection attempts the replica answered with a refusal of its own: wrong database or role. */
const REFUSED_SQLSTATES = new Set(['3D000', '28000', '28P01']);

const SILENT_MESSAGES = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  'timeout expired',
]);

function classify(error: unknown): ReplicaFailure {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && CONFLICT_SQLSTATES.has(code)) return 'conflict';
  // statement_timeout (57014) is the statement's own slowness; the primary would run it as long.
  if (code === '57014') return 'statement';
  if (isQueryTimeout(error) || code === 'ETIMEDOUT' || (error instanceof Error && SILENT_MESSAGES.has(error.message)))
    return 'silent';
  if (isDatabaseUnavailable(error) || code === 'ENOTFOUND' || (typeof code === 'string' && REFUSED_SQLSTATES.has(code)))
    return 'down';
  return 'statement';
}

export interface ReadRouterOptions {
  primary: pg.Pool;
  /** The replica's pool and URL (DATABASE_READ_URL); null: every read goes to the primary. */
  replica: { pool: pg.Pool; url: string } | null;
  /** Where users' writes are marked; null turns read-your-writes off (only the replay check is left). */
  recentWrites: RecentWrites | null;
  settings: ReplicaSettings;
  metrics: ApiMetrics;
  logger: Logger;
}

/**
 * Sends the reads that may lag to the read replica, and every one of them to the primary when
 * that would serve stale or no data:
 *
 * - **Circuit breaker.** A read the replica fails (refused, shut down, no answer) opens it: one
 *   warning in the log, and every replica read goes to the primary
 *   (`lms_db_replica_fallbacks_total{reason="unavailable"}`) until a check at least
 *   REPLICA_CHECK_INTERVAL_SECONDS later finds the replica answering again (one info line).
 * - **Lag.** Every REPLICA_CHECK_INTERVAL_SECONDS the replica's lag is measured against the
 *   primary (`lms_db_replica_lag_seconds`); above REPLICA_MAX_LAG_SECONDS it is skipped
 *   (`reason="lagging"`). A check older than two intervals (and its timeout) counts as no answer.
 * - **Read your writes.** A reader who wrote within REPLICA_READ_YOUR_WRITES_SECONDS, or after
 *   the moment up to which the replica is known to hold every commit, is served by the primary.
 *
 * Reads that must never be stale do not come here at all: the repositories send them to the
 * primary (docs/operations.md lists which).
 */
export class ReadRouter implements LaggingReads {
  private readonly intervalMs: number;
  /** A check that answered longer ago than this is no news: the replica counts as not answering. */
  private readonly staleAfterMs: number;
  private readonly maxLagSeconds: number;
  private readonly readYourWritesMs: number;
  /** The `server` label of the lag gauge and the name in the logs: host:port, never credentials. */
  private readonly server: string;

  /** The newest moment (ms, this clock) up to which the replica is known to hold every commit. */
  private consistentUpTo = 0;
  /** The last check that got an answer. */
  private lastCheck: { at: number; state: ReplicaState } | null = null;
  /** Open breaker: since when the replica has failed. */
  private failedSince: number | null = null;
  private lagging = false;
  private warnedNotStandby = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | null = null;
  private firstCheck: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: ReadRouterOptions) {
    const { settings } = options;
    this.intervalMs = settings.REPLICA_CHECK_INTERVAL_SECONDS * 1000;
    this.staleAfterMs = 2 * this.intervalMs + CHECK_TIMEOUT_MS;
    this.maxLagSeconds = settings.REPLICA_MAX_LAG_SECONDS;
    this.readYourWritesMs = settings.REPLICA_READ_YOUR_WRITES_SECONDS * 1000;
    const replica = options.replica;
    this.server = replica ? (({ host, port }) => `${host}:${port}`)(describePostgresUrl(replica.url)) : '';
    if (replica) {
      // Until the first check answers, the replica's data is of unknown age: the primary serves.
      this.consistentUpTo = Date.now();
      this.firstCheck = this.check();
    }
  }

  /**
   * How long a write must be remembered for `query` to decide correctly: the replay check only
   * trusts a replica whose check is not stale and that lagged at most REPLICA_MAX_LAG_SECONDS.
   */
  static writeMemoryMs(settings: ReplicaSettings): number {
    const replayBound =
      settings.REPLICA_MAX_LAG_SECONDS * 1000 +
      2 * settings.REPLICA_CHECK_INTERVAL_SECONDS * 1000 +
      CHECK_TIMEOUT_MS +
      CLOCK_SKEW_MS;
    return Math.max(settings.REPLICA_READ_YOUR_WRITES_SECONDS * 1000, replayBound);
  }

  async query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    params: unknown[],
    reader: string | null,
  ): Promise<pg.QueryResult<R>> {
    const { primary, replica } = this.options;
    if (!replica || !(await this.replicaServes(reader))) return primary.query<R>(text, params);
    try {
      return await replica.pool.query<R>(text, params);
    } catch (error) {
      const failure = classify(error);
      if (failure === 'statement') throw error;
      if (failure === 'conflict') {
        this.options.metrics.replicaFallbacks.inc({ reason: 'conflict' });
        return primary.query<R>(text, params);
      }
      this.trip(error);
      if (failure === 'silent') throw error;
      this.options.metrics.replicaFallbacks.inc({ reason: 'unavailable' });
      return primary.query<R>(text, params);
    }
  }

  /**
   * Marks that `userId` is about to write (every authenticated request that may change data
   * calls it before its handler), so their next reads, in any API process, see it.
   */
  async noteWrite(userId: string): Promise<void> {
    if (this.options.replica) await this.options.recentWrites?.mark(userId);
  }

  /** The replica's condition for `/ready`; null without one. Waits for the first check. */
  async condition(): Promise<{ condition: ReplicaCondition } | null> {
    if (!this.options.replica) return null;
    await this.firstCheck;
    return { condition: this.currentCondition(Date.now()) };
  }

  /** Stops the checks and closes the replica's pool. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.all([this.firstCheck, this.inFlight]);
    await this.options.replica?.pool.end();
  }

  private currentCondition(now: number): ReplicaCondition {
    if (this.failedSince !== null || !this.lastCheck || now - this.lastCheck.at > this.staleAfterMs)
      return 'unavailable';
    return this.lagging ? 'lagging' : 'ok';
  }

  /**
   * The replica's lag as this process knows it: the last measurement while it answers; while it
   * does not, the time since the moment up to which it was last known to be complete (it will be
   * at least that far behind when it comes back).
   */
  private lagSeconds(now: number): number {
    const measured = this.lastCheck?.state.lagSeconds;
    if (this.currentCondition(now) !== 'unavailable' && measured !== undefined && measured !== null) return measured;
    return Math.max(0, (now - this.consistentUpTo) / 1000);
  }

  private async replicaServes(reader: string | null): Promise<boolean> {
    const now = Date.now();
    if (!this.lastCheck && this.failedSince === null) return false;
    const condition = this.currentCondition(now);
    if (condition !== 'ok') {
      this.options.metrics.replicaFallbacks.inc({ reason: condition });
      return false;
    }
    const { recentWrites } = this.options;
    if (reader === null || !recentWrites) return true;
    // Anything the reader wrote since this moment may be missing on the replica.
    const since = Math.min(now - this.readYourWritesMs, this.consistentUpTo - CLOCK_SKEW_MS);
    return !(await recentWrites.wroteSince(reader, since));
  }

  /** Opens the breaker (logged when it opens, not for every failed read) and moves the next check one interval away. */
  private trip(error: unknown): void {
    if (this.failedSince === null) {
      this.options.logger.warn(
        { err: error, replica: this.server, retryInSeconds: this.intervalMs / 1000 },
        'read replica failed: its reads go to the primary until it answers a check again',
      );
    }
    this.failedSince = Date.now();
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      // A failed read moved the timer while a check was running: that check schedules the next.
      if (this.inFlight) return;
      this.inFlight = this.check().finally(() => {
        this.inFlight = null;
      });
    }, this.intervalMs);
    // The checks never keep a process alive that has nothing else to do.
    this.timer.unref();
  }

  /** Measures the replica once, updates the breaker, the lag and the gauge, and schedules the next check. */
  private async check(): Promise<void> {
    const { replica, primary, logger, metrics } = this.options;
    if (!replica) return;
    const startedAt = Date.now();
    const client = new pg.Client({
      connectionString: replica.url,
      application_name: 'lms-api replica check',
      connectionTimeoutMillis: CHECK_TIMEOUT_MS,
      query_timeout: CHECK_TIMEOUT_MS,
    });
    client.on('error', () => undefined);
    // The primary's WAL position bounds "caught up"; a busy or absent primary only makes the
    // measurement coarser, so its wait is bounded and its failure ignored (measureReplica).
    const boundedPrimary = {
      query: <R extends QueryResultRow>(text: string) => within(CHECK_TIMEOUT_MS, primary.query<R>(text)),
    };
    try {
      const state = await within(
        CHECK_TIMEOUT_MS,
        client.connect().then(() => measureReplica(client, boundedPrimary)),
      );
      this.lastCheck = { at: startedAt, state };
      if (state.lagSeconds !== null) this.consistentUpTo = startedAt - state.lagSeconds * 1000;
      if (!state.standby && !this.warnedNotStandby) {
        this.warnedNotStandby = true;
        logger.warn(
          { replica: this.server },
          'DATABASE_READ_URL is not a standby (pg_is_in_recovery() is false): unless it is the primary itself, its data does not follow DATABASE_URL',
        );
      }
      const lagging = state.lagSeconds === null || state.lagSeconds > this.maxLagSeconds;
      if (lagging !== this.lagging) {
        this.lagging = lagging;
        if (lagging)
          logger.warn(
            { replica: this.server, lagSeconds: state.lagSeconds, maxLagSeconds: this.maxLagSeconds },
            'read replica lags beyond REPLICA_MAX_LAG_SECONDS: its reads go to the primary until it catches up',
          );
        else
          logger.info(
            { replica: this.server, lagSeconds: state.lagSeconds },
            'read replica caught up: it serves reads again',
          );
      }
      // A failure after this check began is newer news than its success.
      if (this.failedSince !== null && this.failedSince < startedAt) {
        this.failedSince = null;
        logger.info({ replica: this.server }, 'read replica answers again: it serves reads again');
      }
    } catch (error) {
      if (this.failedSince === null)
        logger.warn(
          { err: error, replica: this.server, retryInSeconds: this.intervalMs / 1000 },
          'read replica does not answer its check: its reads go to the primary until it does',
        );
      this.failedSince = Date.now();
    } finally {
      // Not awaited: a frozen server never acknowledges the goodbye; pg destroys the socket of a
      // client whose query went unanswered.
      client.end().catch(() => undefined);
      metrics.replicaLag.set({ server: this.server }, this.lagSeconds(Date.now()));
      this.schedule();
    }
  }
}
