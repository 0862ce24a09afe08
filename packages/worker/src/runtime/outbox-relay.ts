import type pg from 'pg';
import {
  claimUnsentOutbox,
  errorMessage,
  isJobName,
  markOutboxSent,
  maskSecretsInText,
  jobSchemas,
  type OutboxRow,
  recordOutboxFailure,
  withTransaction,
  type JobName,
  type JobOf,
  type Logger,
} from '@lms/core';
import type { JobProducer } from '@lms/core/queue';

export interface OutboxRelayOptions {
  pool: pg.Pool;
  producer: JobProducer;
  logger: Logger;
  /** Pause between passes when the outbox was drained or Redis refused (default 1000 ms). */
  intervalMs?: number;
  /** Rows per transaction (default 100). */
  batchSize?: number;
  /** How long one add to Redis may take before the pass gives up on it (default 5000 ms). */
  addTimeoutMs?: number;
}

/**
 * How long one add may take. A queue first used while Redis is down waits for the connection
 * instead of failing; the pass must not hold its rows and its transaction for the whole outage.
 */
const ADD_TIMEOUT_MS = 5000;

/** `work`, or an error after `ms`. An add that completes after all is harmless: its row is relayed again under the same job id. */
async function withinTime<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not take the job within ${ms} ms`)), ms);
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RelayPass {
  /** Rows queued and marked sent. */
  sent: number;
  /** Rows this release cannot queue (unknown job name, a payload its schema refuses), with why. */
  refused: Array<{ id: string; jobName: string; jobId: string; reason: string }>;
  /** Redis did not take a row: the pass stopped there. */
  redisFailed: boolean;
  /** The batch was full: more rows may be waiting. */
  full: boolean;
}

/** Why this release cannot queue `row`, or null when it can. */
function refusal(row: OutboxRow): string | null {
  if (!isJobName(row.job_name)) return `unknown job name ${row.job_name}: this release cannot queue it`;
  const parsed = jobSchemas[row.job_name].safeParse(row.payload);
  if (parsed.success) return null;
  const issues = parsed.error.issues.map(
    (issue) => `${issue.path.map(String).join('.') || '(payload)'}: ${issue.message}`,
  );
  return `invalid payload for ${row.job_name}: ${issues.join('; ')}`;
}

/**
 * One pass: locks a batch of unsent rows (rows other relays hold, and the ids in `skip`, are
 * skipped), adds each to BullMQ with the row's job id and marks the queued ones sent in the same
 * transaction. A relay that dies between the add and the commit leaves the rows unsent: the next
 * pass adds them again under the same ids, which BullMQ ignores while the first job is still
 * kept (completed jobs are kept a day), and the handlers are idempotent beyond that. When Redis
 * refuses, the pass stops at that row (the rest would fail the same way) and records why on it.
 * A row this release cannot queue is recorded and returned, so the caller can skip it.
 */
export async function relayOutboxOnce(
  options: Pick<OutboxRelayOptions, 'pool' | 'producer' | 'batchSize' | 'addTimeoutMs'> & {
    skip?: readonly string[];
  },
): Promise<RelayPass> {
  const batchSize = options.batchSize ?? 100;
  return withTransaction(options.pool, async (client) => {
    const rows = await claimUnsentOutbox(client, batchSize, options.skip);
    const sent: string[] = [];
    const refused: RelayPass['refused'] = [];
    let redisFailed = false;
    for (const row of rows) {
      const reason = refusal(row);
      if (reason !== null) {
        refused.push({ id: row.id, jobName: row.job_name, jobId: row.job_id, reason });
        await recordOutboxFailure(client, row.id, reason);
        continue;
      }
      try {
        await withinTime(
          options.producer.enqueue(row.job_name as JobName, row.payload as JobOf<JobName>, { jobId: row.job_id }),
          options.addTimeoutMs ?? ADD_TIMEOUT_MS,
        );
      } catch (error) {
        redisFailed = true;
        await recordOutboxFailure(client, row.id, maskSecretsInText(errorMessage(error)));
        break;
      }
      sent.push(row.id);
    }
    await markOutboxSent(client, sent);
    return { sent: sent.length, refused, redisFailed, full: rows.length === batchSize };
  });
}

export interface OutboxRelay {
  /** Stops after the running pass. */
  stop(): Promise<void>;
}

/**
 * The relay loop of a worker process: passes back to back while batches come full, then one pass
 * every `intervalMs`. Every worker process runs one; row locks share the rows out between them.
 */
export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { logger } = options;
  const intervalMs = options.intervalMs ?? 1000;
  const batchSize = options.batchSize ?? 100;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  let failing = false;
  // Rows this process cannot queue: skipped from then on, so they never crowd out the others
  // (a restart, e.g. the release that wrote them, looks at them again).
  const refused = new Set<string>();
  const loop = async () => {
    while (!stopped) {
      let again = false;
      try {
        const pass = await relayOutboxOnce({ ...options, batchSize, skip: [...refused] });
        for (const row of pass.refused) {
          refused.add(row.id);
          logger.warn(
            { outboxId: row.id, job: row.jobName, jobId: row.jobId },
            `outbox relay: a job this release cannot queue stays in the outbox: ${row.reason}`,
          );
        }
        if (pass.redisFailed && !failing)
          logger.warn('outbox relay: Redis does not take jobs; they stay in the outbox and are retried');
        if (!pass.redisFailed && failing) logger.info({ sent: pass.sent }, 'outbox relay: queueing again');
        failing = pass.redisFailed;
        again = !pass.redisFailed && pass.full;
      } catch (error) {
        // The database is unreachable: nothing is lost (the rows stay), the next pass tries again.
        logger.warn({ err: error }, `outbox relay pass failed: ${errorMessage(error)}`);
      }
      if (again || stopped) continue;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, intervalMs);
      });
    }
  };
  const running = loop();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
      await running;
    },
  };
}
