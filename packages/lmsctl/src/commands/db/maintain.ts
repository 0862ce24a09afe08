import type { ChalkInstance } from 'chalk';
import type pg from 'pg';
import { connectClient, describePostgresUrl, errorMessage } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import { requireDirectDatabaseUrl, type CommandContext } from '../../context.js';
import { CliError, ExitCode, usageError } from '../../errors.js';
import { withInterrupt } from '../../lib/interrupt.js';
import { formatBytes, startProgress } from '../../lib/progress.js';
import { table } from '../../output.js';
import { estimateIndexBloat, estimateTableBloat, type IndexBloat, type TableBloat } from '../../postgres/bloat.js';
import { holdDatabaseLock } from '../../postgres/database-lock.js';
import {
  analyzeTable,
  indexBuildProgress,
  leftoverIndexes,
  reindexConcurrently,
  vacuumProgress,
  vacuumTable,
  type MaintenanceProgress,
  type RelationName,
} from '../../postgres/maintenance.js';

export interface MaintainOptions {
  /** VACUUM the tables whose dead rows reach `minDead` percent. */
  vacuum?: boolean;
  /** ANALYZE every table (with the VACUUM of those vacuumed). */
  analyze?: boolean;
  /** REINDEX INDEX CONCURRENTLY the btree indexes whose estimated bloat reaches `minBloat` percent. */
  reindexBloated?: boolean;
  /** List what would be done; do nothing. */
  dryRun?: boolean;
  /** Percent of an index estimated as bloat from which it is rebuilt (default 30). */
  minBloat?: number;
  /** Percent of a table's rows dead from which it is vacuumed (default 10). */
  minDead?: number;
  /** MiB a table or index must reach before it is worth vacuuming or rebuilding (default 10). */
  minSize?: number;
}

export const MAINTAIN_DEFAULTS = { minBloat: 30, minDead: 10, minSize: 10 } as const;

export type MaintainKind = 'vacuum' | 'vacuum-analyze' | 'analyze' | 'reindex';

export interface MaintainAction {
  kind: MaintainKind;
  /** schema.name of the table or index. */
  relation: string;
  why: string;
  state: 'planned' | 'done' | 'failed' | 'skipped';
  durationMs?: number;
  error?: string;
}

export interface MaintainResult {
  database: { name: string; host: string; port: number };
  /** What the estimate is: see src/postgres/bloat.ts. */
  estimate: 'catalogue statistics (ioguix/pgsql-bloat-estimation)';
  /** report: no action flag given; dry-run: actions listed, none run; run: actions run. */
  mode: 'report' | 'dry-run' | 'run';
  thresholds: { minBloatPercent: number; minDeadPercent: number; minSizeBytes: number };
  tables: Array<TableBloat & { deadRatio: number }>;
  indexes: IndexBloat[];
  actions: MaintainAction[];
}

function percentOption(name: string, value: number | undefined, fallback: number): number {
  const percent = value ?? fallback;
  if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
    throw usageError(`${name} must be a percentage from 0 to 100`);
  }
  return percent;
}

const deadRatioOf = (table: TableBloat) =>
  table.deadRows === 0 ? 0 : table.deadRows / (table.liveRows + table.deadRows);

/** What the flags and thresholds ask for, in the order it runs: tables first, then their indexes. */
function plan(
  tables: MaintainResult['tables'],
  indexes: IndexBloat[],
  options: MaintainOptions,
  thresholds: MaintainResult['thresholds'],
): MaintainAction[] {
  const actions: MaintainAction[] = [];
  for (const t of tables) {
    const relation = `${t.schema}.${t.table}`;
    const dead =
      options.vacuum && t.deadRatio * 100 >= thresholds.minDeadPercent && t.sizeBytes >= thresholds.minSizeBytes;
    if (dead && t.deadRows > 0) {
      actions.push({
        kind: options.analyze ? 'vacuum-analyze' : 'vacuum',
        relation,
        why: `${t.deadRows} dead rows (${Math.round(t.deadRatio * 100)} %), ${formatBytes(t.sizeBytes)}`,
        state: 'planned',
      });
    } else if (options.analyze) {
      actions.push({
        kind: 'analyze',
        relation,
        why: t.lastAnalyze ? `last analyzed ${t.lastAnalyze}` : 'never analyzed',
        state: 'planned',
      });
    }
  }
  if (options.reindexBloated) {
    for (const index of indexes) {
      if (!index.reindexable || index.bloatRatio === null) continue;
      if (index.bloatRatio * 100 < thresholds.minBloatPercent || index.sizeBytes < thresholds.minSizeBytes) continue;
      actions.push({
        kind: 'reindex',
        relation: `${index.schema}.${index.index}`,
        why: `~${Math.round(index.bloatRatio * 100)} % bloat (${formatBytes(index.bloatBytes ?? 0)} of ${formatBytes(index.sizeBytes)})`,
        state: 'planned',
      });
    }
  }
  return actions;
}

function relationOf(action: MaintainAction): RelationName {
  const dot = action.relation.indexOf('.');
  return { schema: action.relation.slice(0, dot), name: action.relation.slice(dot + 1) };
}

const VERB: Record<MaintainKind, string> = {
  vacuum: 'VACUUM',
  'vacuum-analyze': 'VACUUM (ANALYZE)',
  analyze: 'ANALYZE',
  reindex: 'REINDEX INDEX CONCURRENTLY',
};

function describeProgress(sample: MaintenanceProgress | null): string {
  if (!sample) return 'starting';
  const share = sample.total > 0 ? ` ${Math.floor((sample.done / sample.total) * 100)} %` : '';
  return `${sample.phase}${share}`;
}

/**
 * Runs one action on `worker`, showing on a terminal where pg_stat_progress_vacuum or
 * pg_stat_progress_create_index says it is (read through `watcher`, since `worker` is busy).
 */
async function runAction(
  ctx: CommandContext,
  worker: pg.Client,
  watcher: pg.Client,
  workerPid: number,
  action: MaintainAction,
): Promise<void> {
  const relation = relationOf(action);
  let sample: MaintenanceProgress | null = null;
  const sampleOf = action.kind === 'reindex' ? indexBuildProgress : action.kind === 'analyze' ? null : vacuumProgress;
  const poll = sampleOf
    ? setInterval(() => {
        sampleOf(watcher, workerPid).then(
          (next) => (sample = next),
          () => undefined,
        );
      }, 500)
    : undefined;
  poll?.unref();
  const progress = startProgress(ctx.out, `${VERB[action.kind]} ${action.relation}`, () => describeProgress(sample));
  const started = Date.now();
  try {
    if (action.kind === 'reindex') await reindexConcurrently(worker, relation);
    else if (action.kind === 'analyze') await analyzeTable(worker, relation);
    else await vacuumTable(worker, relation, action.kind === 'vacuum-analyze');
    action.state = 'done';
  } catch (error) {
    action.state = 'failed';
    action.error = errorMessage(error);
    if (action.kind === 'reindex') {
      const leftovers = await leftoverIndexes(watcher, relation).catch(() => []);
      if (leftovers.length) {
        action.error += `; invalid index ${leftovers.join(', ')} left behind: DROP INDEX CONCURRENTLY ${relation.schema}.<name> it`;
      }
    }
  } finally {
    clearInterval(poll);
    progress.stop();
    action.durationMs = Date.now() - started;
  }
  const took = formatDuration(action.durationMs);
  if (action.state === 'done') ctx.out.info(`${VERB[action.kind]} ${action.relation} done in ${took}`);
  else ctx.out.warn(`${VERB[action.kind]} ${action.relation} failed after ${took}: ${action.error}`);
}

/**
 * `lmsctl db maintain`: estimates the bloat of every table and index of the addressed database
 * and, when asked, vacuums, analyzes and rebuilds (concurrently) where the thresholds say it is
 * worth it. Never while a backup or restore of the database runs (their shared lock).
 */
export async function maintain(ctx: CommandContext, options: MaintainOptions = {}): Promise<MaintainResult> {
  const url = await requireDirectDatabaseUrl(ctx, 'maintain');
  const where = describePostgresUrl(url);
  const thresholds = {
    minBloatPercent: percentOption('--min-bloat', options.minBloat, MAINTAIN_DEFAULTS.minBloat),
    minDeadPercent: percentOption('--min-dead', options.minDead, MAINTAIN_DEFAULTS.minDead),
    minSizeBytes: (options.minSize ?? MAINTAIN_DEFAULTS.minSize) * 1024 * 1024,
  };
  const asked = Boolean(options.vacuum || options.analyze || options.reindexBloated);
  const acting = asked && !options.dryRun;
  const lock = acting
    ? await holdDatabaseLock(url, 'exclusive', { applicationName: 'lmsctl db maintain', doing: 'maintain' })
    : null;
  try {
    const worker = await connectClient(url, { applicationName: 'lmsctl db maintain' });
    try {
      const tables = (await estimateTableBloat(worker)).map((t) => ({ ...t, deadRatio: deadRatioOf(t) }));
      const indexes = await estimateIndexBloat(worker);
      const actions = plan(tables, indexes, options, thresholds);
      const result: MaintainResult = {
        database: { name: where.database, host: where.host, port: where.port },
        estimate: 'catalogue statistics (ioguix/pgsql-bloat-estimation)',
        mode: acting ? 'run' : asked ? 'dry-run' : 'report',
        thresholds,
        tables,
        indexes,
        actions,
      };
      if (!acting || actions.length === 0) return result;
      const watcher = await connectClient(url, { applicationName: 'lmsctl db maintain (progress)' });
      try {
        const { rows } = await worker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        const workerPid = rows[0]!.pid;
        await withInterrupt(async (signal) => {
          // A statement goes on in the server after lmsctl is gone: cancel it on Ctrl-C.
          const cancel = () => void watcher.query('SELECT pg_cancel_backend($1)', [workerPid]).catch(() => undefined);
          signal.addEventListener('abort', cancel, { once: true });
          try {
            for (const action of actions) {
              if (signal.aborted) {
                action.state = 'skipped';
                continue;
              }
              await runAction(ctx, worker, watcher, workerPid, action);
            }
          } finally {
            signal.removeEventListener('abort', cancel);
          }
          if (signal.aborted)
            throw new CliError(ExitCode.failed, `${errorMessage(signal.reason)}: maintenance stopped`);
        });
      } finally {
        await watcher.end().catch(() => undefined);
      }
      return result;
    } finally {
      await worker.end().catch(() => undefined);
    }
  } finally {
    await lock?.release();
  }
}

const percent = (ratio: number | null) => (ratio === null ? '?' : `${Math.round(ratio * 100)} %`);

export function renderMaintain(result: MaintainResult, style: ChalkInstance): string {
  const { minBloatPercent, minDeadPercent, minSizeBytes } = result.thresholds;
  const tableRows = result.tables.map((t) => [
    `${t.schema}.${t.table}`,
    formatBytes(t.sizeBytes),
    t.bloatBytes === null ? '?' : formatBytes(t.bloatBytes),
    percent(t.bloatRatio),
    String(t.deadRows),
    percent(t.deadRatio),
  ]);
  const indexRows = result.indexes.map((index) => [
    `${index.schema}.${index.index}`,
    formatBytes(index.sizeBytes),
    index.bloatBytes === null ? '?' : formatBytes(index.bloatBytes),
    percent(index.bloatRatio),
  ]);
  const parts = [
    `Bloat of ${result.database.name} on ${result.database.host}:${result.database.port}, estimated from catalogue statistics ('?': never analyzed, or not a btree index)`,
    '',
    table(['table', 'size', 'bloat', 'bloat %', 'dead rows', 'dead %'], tableRows, style),
    '',
    table(['index', 'size', 'bloat', 'bloat %'], indexRows, style),
    '',
  ];
  if (result.mode === 'report') {
    parts.push(
      'report only: --vacuum, --analyze or --reindex-bloated act on it (with --dry-run: list what they would do)',
    );
    return parts.join('\n');
  }
  if (result.actions.length === 0) {
    parts.push(
      `nothing to do at these thresholds (vacuum from ${minDeadPercent} % dead rows, rebuild from ${minBloatPercent} % bloat, both from ${formatBytes(minSizeBytes)})`,
    );
    return parts.join('\n');
  }
  const mark = (action: MaintainAction) =>
    action.state === 'done'
      ? style.green('done')
      : action.state === 'failed'
        ? style.red('FAILED')
        : action.state === 'skipped'
          ? style.yellow('skipped')
          : style.cyan('would run');
  parts.push(
    table(
      ['', 'statement', 'why', 'took'],
      result.actions.map((action) => [
        mark(action),
        `${VERB[action.kind]} ${action.relation}`,
        action.error ?? action.why,
        action.durationMs === undefined ? '' : formatDuration(action.durationMs),
      ]),
      style,
    ),
  );
  if (result.mode === 'dry-run') parts.push('', 'dry run: nothing was changed');
  return parts.join('\n');
}
