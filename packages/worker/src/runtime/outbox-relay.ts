import type pg from 'pg';
import {
  claimUnsentOutbox,
  errorMessage,
  isJobName,
  markOutboxSent,
  maskSecretsInText,
  jobSchemas,
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
  /** A row could not be queued (Redis down, a payload this release refuses). */
  failed: number;
}

/**
 * One pass: locks a batch of unsent rows (rows other relays hold are skipped), adds each to
 * BullMQ with the row's job id and marks the queued ones sent in the same transaction. A relay
 * that dies between the add and the commit leaves the rows unsent: the next pass adds them
 * again under the same ids, which BullMQ ignores while the first job is still kept (completed
 * jobs are kept a day), and the handlers are idempotent beyond that. When Redis refuses, the
 * pass stops at that row (the rest would fail the same way) and records why on it.
 */
export async function relayOutboxOnce(
  options: Pick<OutboxRelayOptions, 'pool' | 'producer' | 'batchSize' | 'addTimeoutMs'>,
): Promise<RelayPass> {
  return withTransaction(options.pool, async (client) => {
    const rows = await claimUnsentOutbox(client, options.batchSize ?? 100);
    const sent: string[] = [];
    let failed = 0;
    for (const row of rows) {
      if (!isJobName(row.job_name)) {
        failed++;
        await recordOutboxFailure(client, row.id, `unknown job name ${row.job_name}: this release cannot queue it`);
        continue;
      }
      const parsed = jobSchemas[row.job_name].safeParse(row.payload);
      if (!parsed.success) {
        failed++;
        const issues = parsed.error.issues.map(
          (issue) => `${issue.path.map(String).join('.') || '(payload)'}: ${issue.message}`,
        );
        await recordOutboxFailure(client, row.id, `invalid payload for ${row.job_name}: ${issues.join('; ')}`);
        continue;
      }
      try {
        await withinTime(
          options.producer.enqueue(row.job_name, parsed.data as JobOf<JobName>, { jobId: row.job_id }),
          options.addTimeoutMs ?? ADD_TIMEOUT_MS,
        );
      } catch (error) {
        failed++;
        await recordOutboxFailure(client, row.id, maskSecretsInText(errorMessage(error)));
        break;
      }
      sent.push(row.id);
    }
    await markOutboxSent(client, sent);
    return { sent: sent.length, failed };
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
  const loop = async () => {
    while (!stopped) {
      let again = false;
      try {
        const pass = await relayOutboxOnce({ ...options, batchSize });
        if (pass.failed > 0 && !failing)
          logger.warn(
            { failed: pass.failed },
            'outbox relay: jobs could not be queued; they stay in the outbox and are retried',
          );
        if (pass.failed === 0 && failing && pass.sent > 0)
          logger.info({ sent: pass.sent }, 'outbox relay: queueing again');
        failing = pass.failed > 0;
        again = pass.failed === 0 && pass.sent === batchSize;
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
