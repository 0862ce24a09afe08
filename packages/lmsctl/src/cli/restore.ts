import { Option, type Command } from 'commander';
import type { RestoreOptions } from '../commands/restore/restore.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

/** `lmsctl restore …` */
export function registerRestore(program: Command, runtime: Runtime): void {
  const restore = program
    .command('restore')
    .description('restore a verified backup into a new database, check it, then swap it in (never half-restored)')
    .argument(
      '<file|latest>',
      'a backup (file or --jobs folder), an off-site bundle (.tar.gz of backup bundle), or latest (the newest backup of the target database)',
    )
    .addOption(new Option('--dir <dir>', 'backup folder (default: LMS_BACKUP_DIR, else backups/db)'))
    .option('--target-database-url <url>', 'restore into this database instead (e.g. a staging copy)')
    .option(
      '--from-database <name>',
      "the backup's source database, repeated to confirm restoring another database's backup (with latest: its newest)",
    )
    .option('--create', 'create the target database when it does not exist (else refused: a typo must not succeed)')
    .option(
      '--jobs <n>',
      'parallel pg_restore jobs, for either kind of backup (default: CPUs, at most 4)',
      integerAtLeast(1),
    )
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
archive listing); any failure exits 3, as does a backup not signed with the backup key under
LMS_BACKUP_REQUIRE_SIGNED. The restore goes into a new database beside the target,
every table's row count is checked against the manifest, and only then are the two renamed in
one transaction. The replaced database is kept as <name>_pre_restore_<time> until
\`lmsctl restore cleanup\` (or --drop-previous). Ctrl-C, a failure or even a killed lmsctl
leaves the target as it was.

\`latest\` is the newest backup of the target database itself: same name, same server (its
system identifier, else host and port) — never another database's that shares the folder. A
backup of another database (another name, or the same name on another server, as after a lost
host) is refused with exit 2 unless --from-database repeats its source's name. A target that
does not exist is refused unless --create. Without --yes the prompt names the source, its time
and rows, and the target; a target not named like *dev* or *test* must be confirmed by typing
its name.
${examples(
  { cmd: 'lmsctl restore latest --plan', exits: 0 },
  {
    cmd: 'lmsctl restore latest --yes --force-disconnect',
    notRunHere: 'replaces the database the examples after it use',
  },
  { cmd: 'lmsctl restore backups/db/lms_20261128_020000.dump --jobs 4', notRunHere: 'a backup file of the example' },
  {
    cmd: 'lmsctl restore /mnt/offsite/lms-2026-11-28.tar.gz --from-database lms --yes',
    note: 'an off-site bundle as it is',
    notRunHere: 'a bundle of the example',
  },
  {
    cmd: 'lmsctl restore backups/db/lms_20261129_020000.dump.d --jobs 2 --yes',
    note: 'a directory backup (backup --jobs N)',
    notRunHere: 'a backup folder of the example',
  },
  {
    cmd: 'lmsctl restore latest --from-database lms --target-database-url postgres://lms@staging-db/lms_staging --create --yes',
    notRunHere: 'the server staging-db of the example',
  },
  { cmd: 'lmsctl restore cleanup --yes', exits: 0 },
)}`,
    )
    .action(
      action(runtime, async (ctx, spec: string, flags: RestoreOptions) => {
        const { restore: run, renderRestore } = await import('../commands/restore/restore.js');
        const result = await run(ctx, spec, flags);
        ctx.out.result(result, renderRestore);
      }),
    );

  restore
    .command('cleanup')
    .description(
      'drop what restores of this database left: kept <name>_pre_restore_* copies, half-built <name>_restoring_* (asks first)',
    )
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl restore cleanup', notRunHere: 'asks on a terminal' },
        { cmd: 'lmsctl restore cleanup --yes --json', exits: 0 },
        {
          cmd: 'lmsctl restore cleanup --all --yes',
          notRunHere: "drops every database's leftovers on the server, also those of other tests",
        },
      ),
    )
    .option('--target-database-url <url>', 'database whose leftovers to drop (default: DATABASE_URL)')
    .option('--all', "also every other database's leftovers on that server (listed before asking)")
    .action(
      action(runtime, async (ctx, flags: { targetDatabaseUrl?: string; all?: boolean }) => {
        const { restoreCleanup, renderRestoreCleanup } = await import('../commands/restore/cleanup.js');
        ctx.out.result(await restoreCleanup(ctx, flags), renderRestoreCleanup);
      }),
    );
}
