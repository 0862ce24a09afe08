import { type Queue, type Job, type JobType as BullJobType } from 'bullmq';
import type { ChalkInstance } from 'chalk';
import { maskSecretsInText, queueNames, redactSecrets, type QueueName } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { withInterrupt } from '../lib/interrupt.js';
import { table } from '../output.js';
import {
  JOB_STATES,
  queueNamed,
  summarize,
  type QueueOptions,
  type QueueSummary,
  withQueues,
} from '../queues/inspect.js';

/** Job states `queue list` counts, in the order shown. */
export async function queueList(ctx: CommandContext, options: QueueOptions = {}): Promise<{ queues: QueueSummary[] }> {
  return withQueues(ctx, options, queueNames, async (queues) => ({
    queues: await Promise.all(queues.map((queue) => summarize(queue))),
  }));
}

export function renderQueueList(result: { queues: QueueSummary[] }, style: ChalkInstance): string {
  const rows = result.queues.map((summary) => [
    summary.name,
    summary.paused ? style.yellow('paused') : 'running',
    ...JOB_STATES.map((state) => {
      const count = String(summary.counts[state]);
      return state === 'failed' && summary.counts.failed > 0 ? style.red(count) : count;
    }),
    String(summary.workers),
    summary.oldestWaitingMs === null ? '—' : formatDuration(summary.oldestWaitingMs),
  ]);
  return table(
    ['QUEUE', 'STATE', ...JOB_STATES.map((state) => state.toUpperCase()), 'WORKERS', 'OLDEST WAITING'],
    rows,
    style,
  );
}

export interface JobView {
  id: string;
  name: string;
  state: string;
  attemptsMade: number;
  attempts: number;
  createdAt: string;
  processedAt: string | null;
  finishedAt: string | null;
  failedReason: string | null;
}

async function viewOf(job: Job): Promise<JobView> {
  return {
    id: job.id ?? '',
    name: job.name,
    state: await job.getState(),
    attemptsMade: job.attemptsMade,
    attempts: job.opts.attempts ?? 1,
    createdAt: new Date(job.timestamp).toISOString(),
    processedAt: job.processedOn ? new Date(job.processedOn).toISOString() : null,
    finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    failedReason: job.failedReason ? maskSecretsInText(job.failedReason) : null,
  };
}

export async function queueJobs(
  ctx: CommandContext,
  name: string,
  options: QueueOptions & { state?: string; limit?: number } = {},
): Promise<{ queue: QueueName; state: string; jobs: JobView[] }> {
  const queueName = queueNamed(name);
  const state = options.state ?? 'failed';
  if (!(JOB_STATES as readonly string[]).includes(state)) {
    throw usageError(`--state ${state}: expected one of ${JOB_STATES.join(', ')}`);
  }
  return withQueues(ctx, options, [queueName], async ([queue]) => {
    // BullMQ calls the waiting list "wait"; the other names are the same.
    const type: BullJobType = state === 'waiting' ? 'wait' : (state as BullJobType);
    const jobs = await queue!.getJobs([type], 0, (options.limit ?? 20) - 1);
    return { queue: queueName, state, jobs: await Promise.all(jobs.map((job) => viewOf(job as Job))) };
  });
}

export function renderQueueJobs(
  result: { queue: string; state: string; jobs: JobView[] },
  style: ChalkInstance,
): string {
  if (result.jobs.length === 0) return `no ${result.state} jobs in ${result.queue}`;
  return table(
    ['ID', 'NAME', 'ATTEMPTS', 'CREATED', 'FINISHED', 'REASON'],
    result.jobs.map((job) => [
      job.id,
      job.name,
      `${job.attemptsMade}/${job.attempts}`,
      job.createdAt.slice(0, 19).replace('T', ' '),
      job.finishedAt?.slice(0, 19).replace('T', ' ') ?? '—',
      (job.failedReason ?? '').slice(0, 80),
    ]),
    style,
  );
}

export interface JobDetail extends JobView {
  queue: QueueName;
  data: unknown;
  stacktrace: string[];
  returnValue: unknown;
  delayMs: number;
}

async function findJob(queue: Queue, id: string): Promise<Job> {
  const job = (await queue.getJob(id)) as Job | undefined;
  if (!job)
    throw new CliError(
      ExitCode.failed,
      `no job ${id} in ${queue.name}`,
      `\`lmsctl queue jobs ${queue.name} --state failed\` lists failed ones`,
    );
  return job;
}

export async function queueShow(
  ctx: CommandContext,
  name: string,
  id: string,
  options: QueueOptions = {},
): Promise<JobDetail> {
  const queueName = queueNamed(name);
  return withQueues(ctx, options, [queueName], async ([queue]) => {
    const job = await findJob(queue!, id);
    return {
      queue: queueName,
      ...(await viewOf(job)),
      data: redactSecrets(job.data),
      stacktrace: (job.stacktrace ?? []).map((line) => maskSecretsInText(line)),
      returnValue: redactSecrets(job.returnvalue ?? null),
      delayMs: job.delay,
    };
  });
}

export function renderQueueShow(detail: JobDetail, style: ChalkInstance): string {
  return [
    `${style.bold(`${detail.queue} job ${detail.id}`)} ${detail.name} — ${detail.state}, attempt ${detail.attemptsMade}/${detail.attempts}`,
    `created ${detail.createdAt}; processed ${detail.processedAt ?? '—'}; finished ${detail.finishedAt ?? '—'}`,
    `data ${JSON.stringify(detail.data, null, 2)}`,
    ...(detail.failedReason ? [style.red(`failed: ${detail.failedReason}`)] : []),
    ...detail.stacktrace.map((stack) => style.dim(stack)),
  ].join('\n');
}

export async function queueRetry(
  ctx: CommandContext,
  name: string,
  id: string | undefined,
  options: QueueOptions & { allFailed?: boolean } = {},
): Promise<{ queue: QueueName; retried: number }> {
  const queueName = queueNamed(name);
  if (!id && !options.allFailed) throw usageError('name a job id, or pass --all-failed');
  return withQueues(ctx, options, [queueName], async ([queue]) => {
    if (id) {
      const job = await findJob(queue!, id);
      const state = await job.getState();
      if (state !== 'failed') {
        throw usageError(
          `job ${id} of ${queueName} is ${state}, not failed: only failed jobs are retried`,
          state === 'completed'
            ? 'it already ran to completion; running it again would repeat what it did (an e-mail, a webhook)'
            : `\`lmsctl queue jobs ${queueName} --state failed\` lists the failed ones`,
        );
      }
      await job.retry('failed');
      return { queue: queueName, retried: 1 };
    }
    const failed = await queue!.getJobCountByTypes('failed');
    await queue!.retryJobs({ state: 'failed', count: 1000 });
    return { queue: queueName, retried: failed };
  });
}

export async function queueClean(
  ctx: CommandContext,
  name: string,
  options: QueueOptions & { state: 'completed' | 'failed'; olderThan: number; dryRun?: boolean },
): Promise<{ queue: QueueName; state: string; removed: number; dryRun: boolean }> {
  const queueName = queueNamed(name);
  return withQueues(ctx, options, [queueName], async ([queue]) => {
    const cutoff = Date.now() - options.olderThan;
    const jobs = await queue!.getJobs([options.state], 0, -1);
    const old = jobs.filter((job) => (job.finishedOn ?? job.timestamp) < cutoff).length;
    if (options.dryRun || old === 0)
      return { queue: queueName, state: options.state, removed: old, dryRun: Boolean(options.dryRun) };
    ctx.out.info(
      `this removes ${old} ${options.state} job(s) older than ${formatDuration(options.olderThan)} from ${queueName}`,
    );
    await confirmOrRefuse(`Remove ${old} ${options.state} job(s) from ${queueName}?`, {
      yes: ctx.yes,
      action: `remove ${old} jobs`,
    });
    const removed = await queue!.clean(options.olderThan, 0, options.state);
    return { queue: queueName, state: options.state, removed: removed.length, dryRun: false };
  });
}

export async function queuePause(
  ctx: CommandContext,
  name: string | undefined,
  options: QueueOptions & { all?: boolean; resume: boolean },
): Promise<{ changed: QueueName[]; paused: boolean }> {
  if (!name && !options.all) throw usageError('name a queue, or pass --all');
  const names = options.all ? queueNames : [queueNamed(name!)];
  return withQueues(ctx, options, names, async (queues) => {
    for (const queue of queues) {
      if (options.resume) await queue.resume();
      else await queue.pause();
    }
    return { changed: [...names], paused: !options.resume };
  });
}

export interface DrainResult {
  queue: QueueName;
  /** Jobs that were waiting, delayed or prioritized before and are gone now. */
  dropped: number;
  /** Job schedulers (repeatable jobs) of the queue: drain keeps their next run. */
  repeatable: number;
}

/** The states of jobs that have not started, which drain empties. */
const NOT_STARTED: BullJobType[] = ['wait', 'prioritized', 'delayed'];
/** Every state a job can be in: a job in none of them no longer exists. */
const ANY_STATE: BullJobType[] = [
  'wait',
  'prioritized',
  'delayed',
  'active',
  'waiting-children',
  'completed',
  'failed',
];

/**
 * Drops every job of a queue that has not started, after naming how many. BullMQ's drain keeps
 * the next run of each job scheduler (repeatable jobs, ids `repeat:<scheduler>:<next>`), so those
 * are neither announced nor counted; the result counts the jobs that are really gone afterwards
 * (a job a worker took meanwhile is not).
 */
export async function queueDrain(ctx: CommandContext, name: string, options: QueueOptions = {}): Promise<DrainResult> {
  const queueName = queueNamed(name);
  return withQueues(ctx, options, [queueName], async ([queue]) => {
    const schedulers = await queue!.getJobSchedulers();
    const scheduled = new Set(schedulers.map((scheduler) => `repeat:${scheduler.key}:${scheduler.next}`));
    const pending = (await queue!.getRanges(NOT_STARTED, 0, -1)).filter((id) => !scheduled.has(id));
    const repeatable = schedulers.length;
    if (pending.length === 0) return { queue: queueName, dropped: 0, repeatable };
    ctx.out.info(
      `this drops ${pending.length} job(s) of ${queueName} that have not started (waiting, delayed, prioritized); running jobs continue${repeatable ? `, and its ${repeatable} repeatable job(s) stay scheduled` : ''}`,
    );
    await confirmOrRefuse(`Drop ${pending.length} job(s) from ${queueName}?`, {
      yes: ctx.yes,
      action: `drop ${pending.length} jobs from ${queueName}`,
    });
    await queue!.drain(true);
    const remaining = new Set(await queue!.getRanges(ANY_STATE, 0, -1));
    return { queue: queueName, dropped: pending.filter((id) => !remaining.has(id)).length, repeatable };
  });
}

export function renderDrain(result: DrainResult): string {
  const kept = result.repeatable ? `; its ${result.repeatable} repeatable job(s) stay scheduled` : '';
  return `dropped ${result.dropped} job(s) from ${result.queue}${kept}`;
}

/** One refresh of `queue watch --json`: the queues with per-minute rates (null on the first). */
export interface WatchSample {
  at: string;
  queues: Array<QueueSummary & { completedPerMinute: number | null; failedPerMinute: number | null }>;
}

/**
 * A live table of the queues, redrawn every `interval` ms until q (or Ctrl-C), with per-minute
 * rates of completed and failed jobs computed from the changes between redraws. With --json it
 * needs no terminal: one JSON line per refresh (a WatchSample), until Ctrl-C or SIGTERM.
 */
export async function queueWatch(
  ctx: CommandContext,
  options: QueueOptions & { interval?: number; stop?: AbortSignal } = {},
): Promise<void> {
  const { stdin } = process;
  const stdout = ctx.out.streams.stdout;
  if (!ctx.json && !stdout.isTTY && !options.stop)
    throw usageError(
      'queue watch needs a terminal',
      'in scripts use `lmsctl queue watch --json` (a JSON line per refresh) or `lmsctl queue list --json`',
    );
  const interval = options.interval ?? 2000;
  const keys = !ctx.json && stdin.isTTY;
  await withQueues(ctx, options, queueNames, (queues) =>
    withInterrupt(async (interrupted) => {
      let previous: QueueSummary[] | null = null;
      let previousAt = Date.now();
      const stop = new AbortController();
      // Ctrl-C or SIGTERM is how a watch ends, not a failure.
      interrupted.addEventListener('abort', () => stop.abort(), { once: true });
      const onKey = (key: Buffer) => {
        if (key.toString() === 'q' || key[0] === 3) stop.abort();
      };
      if (keys) {
        stdin.setRawMode(true);
        stdin.on('data', onKey);
      }
      try {
        while (!stop.signal.aborted) {
          const now = Date.now();
          const current = await Promise.all(queues.map((queue) => summarize(queue, now)));
          const minutes = (now - previousAt) / 60_000;
          const rate = (index: number, state: 'completed' | 'failed') =>
            previous ? Math.max(0, (current[index]!.counts[state] - previous[index]!.counts[state]) / minutes) : null;
          if (ctx.json) {
            const sample: WatchSample = {
              at: new Date(now).toISOString(),
              queues: current.map((summary, index) => ({
                ...summary,
                completedPerMinute: rate(index, 'completed'),
                failedPerMinute: rate(index, 'failed'),
              })),
            };
            stdout.write(`${JSON.stringify(sample)}\n`);
          } else {
            const shown = (value: number | null) => (value === null ? '—' : value.toFixed(1));
            const rows = current.map((summary, index) => [
              summary.name,
              summary.paused ? ctx.out.style.yellow('paused') : 'running',
              String(summary.counts.waiting),
              String(summary.counts.active),
              String(summary.counts.delayed),
              String(summary.counts.failed),
              shown(rate(index, 'completed')),
              shown(rate(index, 'failed')),
              String(summary.workers),
            ]);
            const screen = table(
              ['QUEUE', 'STATE', 'WAITING', 'ACTIVE', 'DELAYED', 'FAILED', 'DONE/MIN', 'FAILED/MIN', 'WORKERS'],
              rows,
              ctx.out.style,
            );
            stdout.write(
              `${stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${screen}\n\n${ctx.out.style.dim(`${new Date(now).toISOString()} — q to quit`)}\n`,
            );
          }
          previous = current;
          previousAt = now;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, interval);
            stop.signal.addEventListener(
              'abort',
              () => {
                clearTimeout(timer);
                resolve();
              },
              { once: true },
            );
          });
        }
      } finally {
        if (keys) {
          stdin.off('data', onKey);
          stdin.setRawMode(false);
          stdin.pause();
        }
      }
    }, options.stop),
  );
}
