import { Option, type Command } from 'commander';
import type { DrillOptions } from '../commands/drill.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs, integerAtLeast } from './parsers.js';

/** `lmsctl drill` */
export function registerDrill(program: Command, runtime: Runtime): void {
  program
    .command('drill')
    .description(
      'prove a backup restores: restore into a scratch database, check it against the manifest, report, drop it',
    )
    .option(
      '--backup <file|latest>',
      'the backup to drill: a file or --jobs folder, an off-site bundle (.tar.gz), or latest (the newest backup of the database drilled)',
      'latest',
    )
    .option(
      '--from-database <name>',
      "drill the backups of this database instead of --database-url's (e.g. from a drill server)",
    )
    .addOption(new Option('--dir <dir>', 'backup folder (default: LMS_BACKUP_DIR, else backups/db)'))
    .option('--rto <duration>', 'recovery time objective (default: LMS_DRILL_RTO, else 4h)', durationMs)
    .option(
      '--rpo <duration>',
      'recovery point objective: the backup may be this old (default: LMS_DRILL_RPO, else 1h)',
      durationMs,
    )
    .option('--strict', 'a missed RTO or RPO fails the drill instead of warning')
    .option('--keep-scratch', 'keep the scratch database for inspection')
    .option('--jobs <n>', 'parallel pg_restore jobs (default: CPUs, at most 4)', integerAtLeast(1))
    .addHelpText(
      'after',
      `
The scratch database lms_drill_<time> is created on the server of --database-url (default
DATABASE_URL) and dropped afterwards, also on failure or Ctrl-C. Checks: every table of the
manifest with exactly its row count, the newest migration, every foreign key (no orphans) and
a few application queries. Reports go to LMS_DRILL_DIR (drill_YYYYMMDD_HHMMSS.json and .md);
metrics to LMS_METRICS_TEXTFILE_DIR and/or PUSHGATEWAY_URL.
\`latest\` is the newest backup of the database of --database-url (same name, same server), or
with --from-database of that database. Only such routine drills set the drill metrics; a drill of
a named --backup file writes its report but leaves the metrics the alerts watch alone.
Exit codes: 0 passed, 3 a check failed, 1 the drill could not run.
${examples(
  { cmd: 'lmsctl drill', exits: 0 },
  {
    cmd: 'lmsctl drill --backup backups/db/lms_20261128_020000.dump --rpo 26h --strict',
    notRunHere: 'a backup file of the example',
  },
  {
    cmd: 'lmsctl drill --database-url postgres://drill@scratch-db:5432/postgres --from-database lms --keep-scratch',
    notRunHere: 'the server scratch-db of the example',
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: DrillOptions) => {
        const { drill, drillExitError, renderDrill } = await import('../commands/drill.js');
        const result = await drill(ctx, flags);
        ctx.out.result(result, renderDrill);
        const failure = drillExitError(result);
        if (failure) throw failure;
      }),
    );
}
