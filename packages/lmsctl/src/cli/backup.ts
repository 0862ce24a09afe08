import { Option, type Command } from 'commander';
import type { BackupOptions } from '../commands/backup/create.js';
import type { BackupPruneOptions } from '../commands/backup/prune.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

const dirOption = () => new Option('--dir <dir>', 'backup folder (default: LMS_BACKUP_DIR, else backups/db)');
const databaseOption = (what: string) =>
  new Option('--database <name>', `${what} of this database (by name, from any server) instead of DATABASE_URL's`);
const allOption = (what: string) => new Option('--all', `${what} of every database in the folder`);

const LATEST_HELP = `
latest is the newest backup of the database addressed by --database, else by --database-url
or DATABASE_URL (same name, host and port); with neither, of the only database the folder
holds backups of.`;

/** `lmsctl backup …` */
export function registerBackup(program: Command, runtime: Runtime): void {
  const backup = program
    .command('backup')
    .description('dump the database to a verified, checksummed (optionally encrypted) backup with a manifest')
    .addOption(dirOption())
    .option(
      '--jobs <n>',
      'pg_dump jobs (default: BACKUP_JOBS, else 1): 1 writes one custom-format file, more a directory-format folder lms_….dump.d dumped in parallel',
      integerAtLeast(1),
    )
    .option(
      '--compress <n>',
      "pg_dump compression: 0-9 (gzip level), or none / gzip:N / lz4:N / zstd:N (default: pg_dump's for one file, 1 for --jobs above 1)",
    )
    .option('--encrypt', 'encrypt with AES-256-GCM using the key in LMS_BACKUP_KEY_FILE')
    .option('--no-counts', 'skip counting every table inside the snapshot (very large databases)')
    .addHelpText(
      'after',
      `
The dump and the manifest's per-table row counts come from one exported snapshot, so the
counts are exactly what the dump holds. The file gets its name lms_YYYYMMDD_HHMMSS.dump (UTC)
only once complete and checksummed; files are created readable by their owner only.
With --jobs N (N > 1) pg_dump writes a directory-format archive with N workers on the same
snapshot, published as the folder lms_YYYYMMDD_HHMMSS.dump.d; its manifest holds a checksum per
file and one over them all. Every command that takes a backup takes either kind.
With LMS_BACKUP_KEY_FILE set, every manifest is signed with that key (HMAC-SHA256), encrypted or
not; under LMS_BACKUP_REQUIRE_SIGNED, restore, drill, verify and latest refuse unsigned ones.
${examples(
  { cmd: 'lmsctl backup', note: 'back up DATABASE_URL into backups/db', exits: 0 },
  { cmd: 'lmsctl backup --jobs 2', note: 'two pg_dump workers, a directory backup', exits: 0 },
  {
    cmd: 'lmsctl backup --encrypt --dir /var/backups/lms',
    note: 'encrypted, into another folder',
    notRunHere: 'writes to /var/backups/lms with a key file of its own',
  },
  { cmd: 'lmsctl backup list', note: 'newest first, with verification and drills', exits: 0 },
  {
    cmd: 'lmsctl backup verify latest',
    note: 'checksum, manifest and archive readable (exit 3 if not)',
    exits: 0,
  },
  { cmd: 'lmsctl backup prune --keep 14 --keep-days 30 --dry-run', exits: 0 },
  {
    cmd: 'lmsctl backup bundle latest --out /mnt/offsite/lms-latest.tar.gz',
    notRunHere: 'writes to /mnt/offsite, a mount of the example',
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: BackupOptions) => {
        const { backup: run, renderBackup } = await import('../commands/backup/create.js');
        ctx.out.result(await run(ctx, flags), renderBackup);
      }),
    );

  backup
    .command('list')
    .description('list the backups of this database, newest first: size, age, source, encrypted, verified, last drill')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl backup list', exits: 0 },
        { cmd: 'lmsctl backup list --all', note: 'every database that backs up into the folder', exits: 0 },
        { cmd: 'lmsctl backup list --dir /srv/backups --json', notRunHere: 'the folder /srv/backups of the example' },
      ),
    )
    .addOption(dirOption())
    .addOption(databaseOption('list the backups'))
    .addOption(allOption('list the backups'))
    .addHelpText(
      'after',
      "\nWithout --database or --all: the backups of DATABASE_URL's database, else of every database.",
    )
    .action(
      action(runtime, async (ctx, flags: { dir?: string; database?: string; all?: boolean }) => {
        const { backupList, renderBackupList } = await import('../commands/backup/list.js');
        ctx.out.result(await backupList(ctx, flags), renderBackupList);
      }),
    );

  backup
    .command('verify')
    .description('check a backup: manifest signature, sha256, decryption, archive readable (exit 3 on any mismatch)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl backup verify latest', exits: 0 },
        { cmd: 'lmsctl backup verify latest --deep', note: 'also read every data block', exits: 0 },
        {
          cmd: 'lmsctl backup verify latest --deep --jobs 2',
          note: 'read them with two pg_restore processes',
          exits: 0,
        },
        {
          cmd: 'lmsctl backup verify backups/db/lms_20260101_020000.dump',
          notRunHere: 'a backup file of the example',
        },
      ),
    )
    .argument('<file|latest>', 'a backup file, or latest')
    .option(
      '--deep',
      'also stream the whole archive through pg_restore to nowhere, so every data block is read and decompressed',
    )
    .option(
      '--jobs <n>',
      'with --deep: pg_restore processes that share the data blocks (default: CPUs, at most 4)',
      integerAtLeast(1),
    )
    .addOption(dirOption())
    .addOption(databaseOption('latest: the newest backup'))
    .addHelpText(
      'after',
      `
Without --deep, pg_restore reads only the archive's table of contents: an archive whose data is
damaged under a manifest that matches it (rewritten, or re-signed by someone who can write the
folder) passes. --deep reads every data block, takes about as long as the raw pg_restore to
the null device (split over --jobs processes, a fraction of it), and is recorded as a deep
verification: \`check weekly\` counts one of the newest backup when no restore drill ran. An
encrypted single-file backup is decrypted as one stream into one pg_restore, whatever --jobs.
${LATEST_HELP.trimStart()}`,
    )
    .action(
      action(
        runtime,
        async (ctx, spec: string, flags: { dir?: string; database?: string; deep?: boolean; jobs?: number }) => {
          const { backupVerify, renderBackupVerify } = await import('../commands/backup/verify.js');
          ctx.out.result(await backupVerify(ctx, spec, flags), renderBackupVerify);
        },
      ),
    );

  backup
    .command('prune')
    .description('delete old backups; never the newest one nor the newest that passed a drill (asks first)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl backup prune --keep 14 --dry-run', exits: 0 },
        { cmd: 'lmsctl backup prune --keep 7 --keep-days 30 --yes', exits: 0 },
      ),
    )
    .requiredOption('--keep <n>', 'keep this many newest backups', integerAtLeast(1))
    .option('--keep-days <d>', 'also keep every backup younger than this many days', integerAtLeast(0))
    .option('--dry-run', 'show what would be deleted; delete nothing')
    .addOption(dirOption())
    .addOption(databaseOption('prune the backups'))
    .addOption(allOption('prune the backups'))
    .addHelpText(
      'after',
      `
Retention applies to each source database on its own: the backups of DATABASE_URL's database
by default, --database NAME's, or with --all every database's, each keeping its own newest.
Dumps without a manifest are never deleted: lmsctl neither made nor adopted them (they are
named as "not lmsctl backups, left alone"; \`lmsctl backup adopt\` makes them backups).`,
    )
    .action(
      action(runtime, async (ctx, flags: BackupPruneOptions) => {
        const { backupPrune, renderBackupPrune } = await import('../commands/backup/prune.js');
        ctx.out.result(await backupPrune(ctx, flags), renderBackupPrune);
      }),
    );

  backup
    .command('bundle')
    .description('pack a backup, its manifest and its drill reports into one tar.gz for off-site copies')
    .addHelpText(
      'after',
      examples({
        cmd: 'lmsctl backup bundle latest --out /mnt/offsite/lms-latest.tar.gz',
        notRunHere: 'writes to /mnt/offsite, a mount of the example',
      }),
    )
    .argument('<file|latest>', 'a backup file, or latest')
    .requiredOption('--out <path>', 'the bundle to write, named .tar.gz or .tgz (must not exist)')
    .addOption(dirOption())
    .addOption(databaseOption('latest: the newest backup'))
    .addHelpText('after', LATEST_HELP)
    .action(
      action(runtime, async (ctx, spec: string, flags: { out: string; dir?: string; database?: string }) => {
        const { backupBundle, renderBackupBundle } = await import('../commands/backup/bundle.js');
        ctx.out.result(await backupBundle(ctx, spec, flags), renderBackupBundle);
      }),
    );

  backup
    .command('adopt')
    .description(
      'make a pg_dump archive lmsctl did not write a backup: read it deeply, restore it once to count every table, write its manifest',
    )
    .argument('[file]', 'a custom-format file or directory-format folder (a path, or a name in the backup folder)')
    .option('--all', 'every dump in the backup folder that has no manifest')
    .option(
      '--jobs <n>',
      'pg_restore processes of the deep read and jobs of the scratch restore (default: CPUs, at most 4)',
      integerAtLeast(1),
    )
    .addOption(dirOption())
    .addHelpText(
      'after',
      `
Old scripts left lms_YYYYMMDD_HHMMSS.dump files without manifests: until adopted, verify,
restore and drill refuse them and \`latest\` passes over them. Adoption reads the archive to its
end (pg_restore to the null device), restores it into a scratch database on the server of
--database-url (dropped afterwards) and counts every table there, so the manifest's counts come
from the backup itself; the source database is the one its header names, on that server. The
manifest is marked "adopted" with when and how (signed with LMS_BACKUP_KEY_FILE's key when set),
and the adopted backup is listed, verified, restored and drilled like any other. A file outside
the backup folder, or not named like a backup, is copied in under the name of the time its
header gives; the original stays where it is. Exit 3 when an archive fails a check.
${examples(
  {
    cmd: 'lmsctl backup adopt lms_20250101_020000.dump',
    note: 'a dump of the old scripts, in the backup folder',
    notRunHere: 'a dump of the example',
  },
  { cmd: 'lmsctl backup adopt --all', note: 'every dump without a manifest', exits: 0 },
  { cmd: 'lmsctl backup adopt /srv/old-backups/lms-2024-12-31.dump', notRunHere: 'a file of the example' },
)}`,
    )
    .action(
      action(runtime, async (ctx, file: string | undefined, flags: { all?: boolean; jobs?: number; dir?: string }) => {
        const { backupAdopt, renderBackupAdopt } = await import('../commands/backup/adopt.js');
        ctx.out.result(await backupAdopt(ctx, file, flags), renderBackupAdopt);
      }),
    );

  backup
    .command('decrypt')
    .description('write the plain pg_dump archive of an encrypted backup (owner-only), for stock pg_restore')
    .argument('<file|latest>', 'an encrypted backup (a file or a --jobs folder), or latest')
    .requiredOption(
      '--out <path>',
      'the plain archive to write (must not exist): a file, or a folder for a --jobs backup',
    )
    .addOption(dirOption())
    .addOption(databaseOption('latest: the newest backup'))
    .addHelpText(
      'after',
      `
Needs LMS_BACKUP_KEY_FILE with the backup's key. Every chunk is authenticated and, when the
manifest lies beside the backup, its signature and checksums are checked; only then does --out
appear (readable by its owner only). Nothing is written on a wrong key or a damaged file (exit 3).
The format is documented in docs/backups.md, with standalone decryptors in Python and Node.
${LATEST_HELP.trimStart()}
${examples(
  {
    cmd: 'lmsctl backup decrypt latest --out /tmp/lms-plain.dump',
    note: 'then: pg_restore --list /tmp/lms-plain.dump',
    notRunHere: 'the backups of the examples are not encrypted',
  },
  {
    cmd: 'lmsctl backup decrypt lms_20261128_020000.dump.d --out /srv/restore/lms.dump.d',
    notRunHere: 'a backup folder of the example',
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, spec: string, flags: { out: string; dir?: string; database?: string }) => {
        const { backupDecrypt, renderBackupDecrypt } = await import('../commands/backup/decrypt.js');
        ctx.out.result(await backupDecrypt(ctx, spec, flags), renderBackupDecrypt);
      }),
    );
}
