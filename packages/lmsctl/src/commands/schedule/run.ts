import { errorMessage } from '@lms/core';
import type { ChalkInstance } from 'chalk';
import cron from 'node-cron';
import type { CommandContext } from '../../context.js';
import { parseCron } from '../../lib/cron.js';
import { formatDuration } from '@lms/core/duration';
import { formatBytes } from '../../lib/progress.js';
import { backup } from '../../backup/create.js';
import { backupPrune } from '../../backup/retention.js';
import { drill } from '../../backup/drill.js';
import { DEFAULT_BACKUP_CRON, DEFAULT_DRILL_CRON } from '../../lib/cron.js';

export interface ScheduleRunOptions {
  /** When to back up: a cron expression (`--backup`). */
  backup?: string;
  /** When to drill: a cron expression (`--drill`). */
  drill?: string;
  /** After each backup, prune to this many (never the newest nor the newest drilled one). */
  pruneKeep?: number;
  /** Encrypt scheduled backups (needs LMS_BACKUP_KEY_FILE). */
  encrypt?: boolean;
  /** Stops scheduling when aborted (tests); in production SIGTERM/SIGINT do. */
  stop?: AbortSignal;
}

export type JobKind = 'backup' | 'drill';

export interface ScheduleEvent {
  at: string;
  kind: JobKind | 'scheduler';
  event: 'started' | 'finished' | 'failed' | 'skipped' | 'stopping' | 'stopped';
  detail: string;
  durationMs?: number;
}

export interface ScheduleRunResult {
  events: ScheduleEvent[];
  runs: { backup: number; drill: number };
  failures: number;
}

/**
 * The long-running scheduler (a service in the production compose file): backups and drills
 * on cron schedules in this machine's local time, pruning after each backup. A run never
 * overlaps the previous one of its kind (the tick is skipped and logged); the first SIGTERM or
 * Ctrl-C stops scheduling and waits for the running job, a second one interrupts it.
 */
export async function scheduleRun(ctx: CommandContext, options: ScheduleRunOptions = {}): Promise<ScheduleRunResult> {
  const schedules = {
    backup: parseCron(options.backup ?? DEFAULT_BACKUP_CRON, '--backup', { allowSeconds: true }),
    drill: parseCron(options.drill ?? DEFAULT_DRILL_CRON, '--drill', { allowSeconds: true }),
  };
  const events: ScheduleEvent[] = [];
  const runs = { backup: 0, drill: 0 };
  let failures = 0;
  const log = (event: Omit<ScheduleEvent, 'at'>) => {
    const entry: ScheduleEvent = { at: new Date().toISOString(), ...event };
    events.push(entry);
    if (ctx.json) {
      ctx.out.streams.stdout.write(`${JSON.stringify(entry)}\n`);
    } else {
      const took = entry.durationMs === undefined ? '' : ` (${formatDuration(entry.durationMs)})`;
      ctx.out.info(`${entry.at} ${entry.kind} ${entry.event}${entry.detail ? `: ${entry.detail}` : ''}${took}`);
    }
  };

  // Jobs run unattended: pruning must not wait for a confirmation nobody can give.
  const jobCtx: CommandContext = { ...ctx, yes: true };
  const interruptJobs = new AbortController();
  const jobs: Record<JobKind, () => Promise<string>> = {
    async backup() {
      const result = await backup(jobCtx, { encrypt: options.encrypt, signal: interruptJobs.signal });
      let detail = `${result.file} (${formatBytes(result.sizeBytes)})`;
      if (options.pruneKeep) {
        const pruned = await backupPrune(jobCtx, { keep: options.pruneKeep });
        detail += `; pruned ${pruned.deleted.length} old backup(s)`;
      }
      return detail;
    },
    async drill() {
      const result = await drill(jobCtx, { signal: interruptJobs.signal });
      const detail = `${result.report.verdict}, report ${result.reportPath}`;
      if (result.report.verdict !== 'pass') throw new Error(detail);
      return detail;
    },
  };

  const running = new Map<JobKind, Promise<void>>();
  const tick = (kind: JobKind) => () => {
    if (running.has(kind)) {
      log({ kind, event: 'skipped', detail: `the previous ${kind} is still running` });
      return;
    }
    const started = Date.now();
    log({ kind, event: 'started', detail: '' });
    runs[kind]++;
    const job = jobs[kind]()
      .then((detail) => log({ kind, event: 'finished', detail, durationMs: Date.now() - started }))
      .catch((error: unknown) => {
        failures++;
        log({
          kind,
          event: 'failed',
          detail: errorMessage(error),
          durationMs: Date.now() - started,
        });
      })
      .finally(() => running.delete(kind));
    running.set(kind, job);
  };

  const tasks = (Object.keys(schedules) as JobKind[]).map((kind) =>
    // The overlap guard is ours (so a skipped tick is logged); node-cron only fires the ticks.
    cron.schedule(schedules[kind].expression, tick(kind), { name: `lms-${kind}`, noOverlap: false }),
  );
  const describeNext = (kind: JobKind, index: number) =>
    `${kind} "${schedules[kind].expression}" next ${tasks[index]!.getNextRun()?.toISOString() ?? 'never'}`;
  log({
    kind: 'scheduler',
    event: 'started',
    detail: `${describeNext('backup', 0)}; ${describeNext('drill', 1)}${options.pruneKeep ? `; keeping ${options.pruneKeep} backups` : ''}`,
  });

  await new Promise<void>((resolve) => {
    let stopping = false;
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    const stop = (why: string) => {
      if (stopping) {
        // Asked twice: interrupt the running job instead of waiting for it.
        interruptJobs.abort(new Error(`interrupted (${why})`));
        return;
      }
      stopping = true;
      for (const task of tasks) void task.stop();
      const waiting = [...running.keys()];
      log({
        kind: 'scheduler',
        event: 'stopping',
        detail: waiting.length ? `${why}; waiting for the running ${waiting.join(' and ')}` : why,
      });
      void Promise.all(running.values()).then(async () => {
        for (const name of signals) process.removeListener(name, onSignal);
        for (const task of tasks) await task.destroy();
        log({
          kind: 'scheduler',
          event: 'stopped',
          detail: `${runs.backup} backup(s), ${runs.drill} drill(s), ${failures} failure(s)`,
        });
        resolve();
      });
    };
    const onSignal = (signal: NodeJS.Signals) => stop(signal);
    for (const name of signals) process.on(name, onSignal);
    options.stop?.addEventListener('abort', () => stop('stop requested'), { once: true });
  });
  return { events, runs, failures };
}

export function renderScheduleRun(result: ScheduleRunResult, style: ChalkInstance): string {
  const summary = `scheduler stopped after ${result.runs.backup} backup(s) and ${result.runs.drill} drill(s)`;
  return result.failures ? `${summary}, ${style.red(`${result.failures} failed`)}` : summary;
}
