import type { Command } from 'commander';
import { CliError, ExitCode } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

export interface MaintainFlags {
  vacuum?: boolean;
  analyze?: boolean;
  reindexBloated?: boolean;
  dryRun?: boolean;
  minBloat: number;
  minDead: number;
  minSize: number;
}

/** `lmsctl db maintain|slow` */
export function registerDb(program: Command, runtime: Runtime): void {
  const db = program
    .command('db')
    .description('the database itself: bloat, VACUUM and REINDEX, slow statements')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl db maintain', note: '(report the estimated bloat only)', exits: 0 },
        {
          cmd: 'lmsctl db slow --limit 5',
          notRunHere: 'needs pg_stat_statements, which the CI server does not preload',
        },
      ),
    );

  db.command('maintain')
    .description(
      'estimate the bloat of every table and index; with --vacuum, --analyze, --reindex-bloated: VACUUM (ANALYZE) and REINDEX INDEX CONCURRENTLY where the thresholds say it is worth it',
    )
    .option('--vacuum', 'VACUUM the tables whose dead rows reach --min-dead')
    .option('--analyze', 'ANALYZE every table (together with the VACUUM of those vacuumed)')
    .option(
      '--reindex-bloated',
      'REINDEX INDEX CONCURRENTLY the btree indexes whose estimated bloat reaches --min-bloat',
    )
    .option('--dry-run', 'list what the flags would do; change nothing')
    .option('--min-bloat <percent>', 'estimated bloat of an index from which it is rebuilt', integerAtLeast(0), 30)
    .option(
      '--min-dead <percent>',
      'share of a table’s rows that are dead from which it is vacuumed',
      integerAtLeast(0),
      10,
    )
    .option('--min-size <MiB>', 'size below which a table or index is left alone', integerAtLeast(0), 10)
    .addHelpText(
      'after',
      `
The estimate comes from catalogue statistics (pg_class, pg_stats: the ioguix/pgsql-bloat-estimation
queries), not pgstattuple, which reads every page and needs the extension and extra privileges: it is
as fresh as the last ANALYZE, and '?' marks a table never analyzed. Nothing here blocks the
application: VACUUM (never FULL) and ANALYZE take SHARE UPDATE EXCLUSIVE, and indexes are rebuilt
with REINDEX INDEX CONCURRENTLY only, beside the old one, which serves until the swap. They do take
I/O: run them off-peak. Refused (exit 1) while an lmsctl backup or restore of the database runs,
and a backup or restore is refused while this runs. Exit 1 when a statement failed.
${examples(
  { cmd: 'lmsctl db maintain --vacuum --analyze --reindex-bloated --dry-run', exits: 0 },
  { cmd: 'lmsctl db maintain --vacuum --analyze', exits: 0 },
  {
    cmd: 'lmsctl db maintain --reindex-bloated --min-bloat 50 --min-size 100 --json',
    exits: 0,
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: MaintainFlags) => {
        const { maintain, renderMaintain } = await import('../commands/db/maintain.js');
        const result = await maintain(ctx, flags);
        ctx.out.result(result, renderMaintain);
        const failed = result.actions.filter((entry) => entry.state === 'failed').length;
        if (failed)
          throw new CliError(ExitCode.failed, `${failed} maintenance statement(s) failed (see above)`, undefined, true);
      }),
    );

  db.command('slow')
    .description('the statements that took the most time in total, from pg_stat_statements (exit 1 without it)')
    .option('--limit <n>', 'how many statements', integerAtLeast(1), 10)
    .addHelpText(
      'after',
      `
Without pg_stat_statements it says how to enable it: shared_preload_libraries = 'pg_stat_statements',
a restart of PostgreSQL, then CREATE EXTENSION pg_stat_statements in the database.
${examples(
  { cmd: 'lmsctl db slow --limit 5', notRunHere: 'needs pg_stat_statements, which the CI server does not preload' },
  { cmd: 'lmsctl db slow --json', notRunHere: 'needs pg_stat_statements, which the CI server does not preload' },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: { limit: number }) => {
        const { slow, renderSlow } = await import('../commands/db/slow.js');
        ctx.out.result(await slow(ctx, flags), renderSlow);
      }),
    );
}
