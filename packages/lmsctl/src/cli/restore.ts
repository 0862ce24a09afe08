import { Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

interface RestoreFlags {
  dir?: string;
  targetDatabaseUrl?: string;
  jobs?: number;
  forceDisconnect?: boolean;
  plan?: boolean;
  dropPrevious?: boolean;
  pauseQueues: boolean;
  analyze?: boolean;
  acl: boolean;
}

/** `lmsctl restore …` */
export function registerRestore(program: Command, runtime: Runtime): void {
  const restore = program
    .command('restore')
    .description('restore a verified backup into a new database, check it, then swap it in (never half-restored)')
    .argument('<file|latest>', 'a backup file, or latest')
    .addOption(new Option('--dir <dir>', 'backup folder (default: LMS_BACKUP_DIR, else backups/db)'))
    .option('--target-database-url <url>', 'restore into this database instead (e.g. a staging copy)')
    .option('--jobs <n>', 'parallel pg_restore jobs (default: CPUs, at most 4)', integerAtLeast(1))
    .option('--force-disconnect', 'terminate other sessions on the target at the swap')
    .option('--plan', 'show what would happen (contents, sessions, disk, versions); change nothing')
    .option('--drop-previous', 'drop the replaced database after the swap instead of keeping it')
    .option(
      '--no-pause-queues',
      'do not pause the job queues during the restore (they are paused only when the restore replaces DATABASE_URL)',
    )
    .option('--analyze', 'ANALYZE the restored tables before the swap (else autovacuum does it shortly after)')
    .option('--no-acl', 'skip privileges (GRANT/REVOKE) from the backup, for a server without its roles')
    .addHelpText(
      'after',
      `
Before anything is touched the backup is verified (manifest signature, sha256, decryption,
archive listing); any failure exits 3. The restore goes into a new database beside the target,
every table's row count is checked against the manifest, and only then are the two renamed in
one transaction. The replaced database is kept as <name>_pre_restore_<time> until
\`lmsctl restore cleanup\` (or --drop-previous). Ctrl-C, a failure or even a killed lmsctl
leaves the target as it was.

Examples:
  $ lmsctl restore latest --plan
  $ lmsctl restore latest --yes --force-disconnect
  $ lmsctl restore backups/db/lms_20261128_020000.dump --jobs 4
  $ lmsctl restore latest --target-database-url postgres://lms@staging-db/lms_staging --yes
  $ lmsctl restore cleanup --yes`,
    )
    .action(
      action(runtime, async (ctx, spec: string, flags: RestoreFlags) => {
        const { restore: run, renderRestore } = await import('../commands/restore.js');
        const result = await run(ctx, spec, {
          dir: flags.dir,
          targetDatabaseUrl: flags.targetDatabaseUrl,
          jobs: flags.jobs,
          forceDisconnect: flags.forceDisconnect,
          plan: flags.plan,
          dropPrevious: flags.dropPrevious,
          pauseQueues: flags.pauseQueues,
          analyze: flags.analyze,
          noAcl: !flags.acl,
        });
        ctx.out.result(result, renderRestore);
      }),
    );

  restore
    .command('cleanup')
    .description('drop the databases earlier restores kept, and half-built ones left by interrupted runs (asks first)')
    .addHelpText('after', examples('lmsctl restore cleanup', 'lmsctl restore cleanup --yes --json'))
    .option('--target-database-url <url>', 'server to clean (default: DATABASE_URL)')
    .action(
      action(runtime, async (ctx, flags: { targetDatabaseUrl?: string }) => {
        const { restoreCleanup, renderRestoreCleanup } = await import('../commands/restore.js');
        ctx.out.result(await restoreCleanup(ctx, flags), renderRestoreCleanup);
      }),
    );
}
