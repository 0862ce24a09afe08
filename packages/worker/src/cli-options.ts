import { parseArgs } from 'node:util';
import { errorMessage, isQueueName, queueNames, type Config, type QueueName } from '@lms/core';
import type { RecoverySettings } from './runtime/job-runner.js';

/** The command line of `main.ts`. */
export interface WorkerCliOptions {
  help: boolean;
  queues: QueueName[];
  /** undefined: WORKER_SCHEDULER, else on in development. */
  scheduler: boolean | undefined;
  envFile: string | undefined;
  recovery: Partial<RecoverySettings>;
}

/** A bad command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const usage = `Usage: worker [options]

Runs the LMS job workers (BullMQ) and, optionally, the scheduler of periodic jobs.

Options:
  --queues LIST           queues to work on, comma-separated: ${queueNames.join(',')}
                          (default: all; "none" for a scheduler-only process)
  --scheduler             also run the scheduler (default: WORKER_SCHEDULER, else on in development)
  --no-scheduler          do not run the scheduler
  --env-file FILE         read variables from FILE first (variables already set win)
  --lock-duration MS      job lock lifetime; a dead worker's jobs are recovered after it (default 30000)
  --stalled-interval MS   how often to look for jobs of dead workers (default 30000)
  -h, --help              show this help

Examples:
  worker                                  all four queues, scheduler as configured
  worker --queues emails,webhooks         only these queues
  worker --queues none --scheduler        the scheduler service of a production stack
`;

function milliseconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms < 100 || ms > 3_600_000) {
    throw new UsageError(`${flag} must be a whole number of milliseconds from 100 to 3600000, got "${value}"`);
  }
  return ms;
}

/** Parses the worker's arguments (without node and the script). */
export function parseWorkerArgs(argv: string[]): WorkerCliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        queues: { type: 'string' },
        scheduler: { type: 'boolean' },
        'no-scheduler': { type: 'boolean' },
        'env-file': { type: 'string' },
        'lock-duration': { type: 'string' },
        'stalled-interval': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  if (values.scheduler && values['no-scheduler'])
    throw new UsageError('--scheduler and --no-scheduler contradict each other');
  let queues: QueueName[] = [...queueNames];
  const list = values.queues?.trim();
  if (list !== undefined && list !== 'all') {
    if (list === 'none') queues = [];
    else {
      const names = list
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean);
      const unknown = names.filter((name) => !isQueueName(name));
      if (unknown.length > 0 || names.length === 0) {
        throw new UsageError(
          `unknown queue "${unknown.join('", "')}": choose from ${queueNames.join(', ')} (or all, none)`,
        );
      }
      queues = [...new Set(names)] as QueueName[];
    }
  }
  const recovery: Partial<RecoverySettings> = {};
  const lockDurationMs = milliseconds(values['lock-duration'], '--lock-duration');
  const stalledIntervalMs = milliseconds(values['stalled-interval'], '--stalled-interval');
  if (lockDurationMs !== undefined) recovery.lockDurationMs = lockDurationMs;
  if (stalledIntervalMs !== undefined) recovery.stalledIntervalMs = stalledIntervalMs;
  return {
    help: values.help ?? false,
    queues,
    scheduler: values.scheduler ? true : values['no-scheduler'] ? false : undefined,
    envFile: values['env-file'],
    recovery,
  };
}

/** Whether this process runs the scheduler: the flag, else WORKER_SCHEDULER, else only in development. */
export function schedulerEnabled(
  flag: boolean | undefined,
  config: Pick<Config, 'WORKER_SCHEDULER' | 'NODE_ENV'>,
): boolean {
  return flag ?? config.WORKER_SCHEDULER ?? config.NODE_ENV === 'development';
}
