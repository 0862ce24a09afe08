import { Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

const dirOption = () => new Option('--dir <dir>', 'backup folder (default: LMS_BACKUP_DIR, else backups/db)');

/** `lmsctl backup …` */
export function registerBackup(program: Command, runtime: Runtime): void {
  const backup = program
    .command('backup')
    .description('dump the database to a verified, checksummed (optionally encrypted) backup with a manifest')
    .addOption(dirOption())
    .option('--compress <n>', 'pg_dump compression: 0-9 (gzip level), or none / gzip:N / lz4:N / zstd:N')
    .option('--encrypt', 'encrypt with AES-256-GCM using the key in LMS_BACKUP_KEY_FILE')
    .option('--no-counts', 'skip counting every table inside the snapshot (very large databases)')
    .addHelpText(
      'after',
      `
The dump and the manifest's per-table row counts come from one exported snapshot, so the
counts are exactly what the dump holds. The file gets its name lms_YYYYMMDD_HHMMSS.dump (UTC)
only once complete and checksummed; files are created readable by their owner only.

Examples:
  $ lmsctl backup                                   back up DATABASE_URL into backups/db
  $ lmsctl backup --encrypt --dir /var/backups/lms  encrypted, into another folder
  $ lmsctl backup list                              newest first, with verification and drills
  $ lmsctl backup verify latest                     checksum, manifest and archive readable (exit 3 if not)
  $ lmsctl backup prune --keep 14 --keep-days 30 --dry-run
  $ lmsctl backup bundle latest --out /mnt/offsite/lms-latest.tar.gz`,
    )
    .action(
      action(runtime, async (ctx, flags: { dir?: string; compress?: string; encrypt?: boolean; counts: boolean }) => {
        const { backup: run, renderBackup } = await import('../commands/backup.js');
        ctx.out.result(
          await run(ctx, { dir: flags.dir, compress: flags.compress, encrypt: flags.encrypt, counts: flags.counts }),
          renderBackup,
        );
      }),
    );

  backup
    .command('list')
    .description('list backups, newest first: size, age, encrypted, verified, last drill')
    .addHelpText('after', examples('lmsctl backup list', 'lmsctl backup list --dir /srv/backups --json'))
    .addOption(dirOption())
    .action(
      action(runtime, async (ctx, flags: { dir?: string }) => {
        const { backupList, renderBackupList } = await import('../commands/backup-maintenance.js');
        ctx.out.result(await backupList(ctx, flags), renderBackupList);
      }),
    );

  backup
    .command('verify')
    .description('check a backup: manifest signature, sha256, decryption, archive readable (exit 3 on any mismatch)')
    .addHelpText(
      'after',
      examples('lmsctl backup verify latest', 'lmsctl backup verify backups/db/lms_20260101_020000.dump'),
    )
    .argument('<file|latest>', 'a backup file, or latest')
    .addOption(dirOption())
    .action(
      action(runtime, async (ctx, spec: string, flags: { dir?: string }) => {
        const { backupVerify, renderBackupVerify } = await import('../commands/backup-maintenance.js');
        ctx.out.result(await backupVerify(ctx, spec, flags), renderBackupVerify);
      }),
    );

  backup
    .command('prune')
    .description('delete old backups; never the newest one nor the newest that passed a drill (asks first)')
    .addHelpText(
      'after',
      examples('lmsctl backup prune --keep 14 --dry-run', 'lmsctl backup prune --keep 7 --keep-days 30 --yes'),
    )
    .requiredOption('--keep <n>', 'keep this many newest backups', integerAtLeast(1))
    .option('--keep-days <d>', 'also keep every backup younger than this many days', integerAtLeast(0))
    .option('--dry-run', 'show what would be deleted; delete nothing')
    .addOption(dirOption())
    .action(
      action(runtime, async (ctx, flags: { keep: number; keepDays?: number; dryRun?: boolean; dir?: string }) => {
        const { backupPrune, renderBackupPrune } = await import('../commands/backup-maintenance.js');
        ctx.out.result(await backupPrune(ctx, flags), renderBackupPrune);
      }),
    );

  backup
    .command('bundle')
    .description('pack a backup, its manifest and its drill reports into one tar.gz for off-site copies')
    .addHelpText('after', examples('lmsctl backup bundle latest --out /mnt/offsite/lms-latest.tar.gz'))
    .argument('<file|latest>', 'a backup file, or latest')
    .requiredOption('--out <path>', 'the .tar.gz to write (must not exist)')
    .addOption(dirOption())
    .action(
      action(runtime, async (ctx, spec: string, flags: { out: string; dir?: string }) => {
        const { backupBundle, renderBackupBundle } = await import('../commands/backup-maintenance.js');
        ctx.out.result(await backupBundle(ctx, spec, flags), renderBackupBundle);
      }),
    );
}
