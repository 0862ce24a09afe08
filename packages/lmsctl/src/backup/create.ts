import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { connectClient, describePostgresUrl } from '@lms/core/essentials';
import { requireSessionDatabase, type CommandContext } from '../context.js';
import { CliError, ExitCode, usageError, withPath } from '../errors.js';
import { checkArchive, listArchiveFile } from './archive/check.js';
import { ENCRYPTION_ALGORITHM, createEncryptStream, readEncryptionHeader, type BackupKey } from './archive/crypto.js';
import { encryptFolder, hashFolder, removeFolder, restrictFolder, TOC_FILE } from './archive/directory.js';
import { identityOfConnection, type DatabaseIdentity } from './identity.js';
import {
  ensureBackupDir,
  folderSize,
  publishDump,
  backupFileName,
  writeVerification,
  type ArchiveKind,
} from './archive/store.js';
import { formatDuration } from '@lms/core/duration';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import {
  MANIFEST_FORMAT,
  manifestPathOf,
  setChecksum,
  signManifest,
  writeManifest,
  type ArchiveFile,
  type BackupManifest,
} from './archive/manifest.js';
import { followFolder, type FolderFollower } from './archive/folder-follower.js';
import { partialPathOf, removeStalePartials } from './archive/partial-files.js';
import {
  assertDumpCanReadServer,
  pgToolVersion,
  startPgTool,
  toolFailure,
  type ArchiveListing,
  type PgToolsOptions,
} from '../postgres/tools.js';
import { describeTransfer, formatBytes, startProgress } from '../lib/progress.js';
import { lmsctlVersion } from '../version.js';
import { backupDirOf, backupKeyOf, publishMetrics, toolsOf, workDirOf } from './context.js';
import { countRows, listTables, newestMigration, type TableRef } from './catalog.js';
import { openLockSession } from '../postgres/database-lock.js';
import { refuseConnectionThroughPooler } from '../postgres/direct-connection.js';

export interface BackupOptions {
  /** Backup folder (default LMS_BACKUP_DIR). */
  dir?: string;
  /** pg_dump --compress value: 0-9, or method[:level] where pg_dump supports it. */
  compress?: string;
  encrypt?: boolean;
  /** Count every table's rows inside the dump's snapshot (default true). */
  counts?: boolean;
  /**
   * pg_dump jobs (default BACKUP_JOBS): 1 writes one custom-format file, more a directory-format
   * folder (`….dump.d`) that several pg_dump workers fill at once.
   */
  jobs?: number;
  /** Aborts the backup; without it, SIGINT/SIGTERM do (see withInterrupt). */
  signal?: AbortSignal;
}

export interface BackupResult {
  file: string;
  manifest: string;
  /** `custom` (one file) or `directory` (a folder, from --jobs above 1). */
  archive: ArchiveKind;
  /** pg_dump jobs. */
  jobs: number;
  sizeBytes: number;
  sha256: string;
  encrypted: boolean;
  /** The manifest carries an HMAC of the backup key (LMS_BACKUP_KEY_FILE set), not only a plain digest. */
  signed: boolean;
  database: DatabaseIdentity;
  tables: number | null;
  rows: number | null;
  migration: number | null;
  startedAt: string;
  durationMs: number;
}

const COMPRESS_PATTERN = /^(?:[0-9]|none|gzip(?::[1-9])?|lz4(?::\d{1,2})?|zstd(?::\d{1,2})?)$/;

/**
 * The compression of a directory backup when --compress is not given: gzip level 1, by
 * measurement (docs/backups.md, "Compression"): on a 600 MiB LMS database with 2 jobs it takes
 * about half the time of pg_dump's default level for an archive a few per cent larger. A
 * single-file backup keeps pg_dump's default, as before.
 */
export const DIRECTORY_DEFAULT_COMPRESS = '1';

interface SnapshotFacts {
  snapshot: string;
  identity: DatabaseIdentity;
  serverVersion: string;
  serverVersionNum: number;
  databaseSizeBytes: number;
  migration: { version: number; name: string } | null;
  tables: TableRef[];
}

async function openSnapshot(client: pg.Client, url: string): Promise<SnapshotFacts> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
  const { rows } = await client.query<{ snapshot: string; version: string; num: string; size: string }>(
    `SELECT pg_export_snapshot() AS snapshot, current_setting('server_version') AS version,
            current_setting('server_version_num') AS num, pg_database_size(current_database()) AS size`,
  );
  const facts = rows[0]!;
  return {
    snapshot: facts.snapshot,
    identity: await identityOfConnection(client, url),
    serverVersion: facts.version.split(' ')[0]!,
    serverVersionNum: Number(facts.num),
    databaseSizeBytes: Number(facts.size),
    migration: await newestMigration(client),
    tables: await listTables(client),
  };
}

/** What the archive holds once written and checked: what the manifest records of it. */
interface WrittenArchive {
  sha256: string;
  sizeBytes: number;
  encryption: { keyId: string; chunkSize: number } | null;
  /** A directory backup's files (null for a single file). */
  files: ArchiveFile[] | null;
  listing: ArchiveListing;
}

/**
 * How one kind of archive is written: where pg_dump writes (a temporary file or folder, never
 * under a backup's name), how far it got, and the check that turns it into a WrittenArchive.
 */
interface ArchiveWriter {
  kind: ArchiveKind;
  /** What is renamed to the backup's name once checked. */
  temporary: string;
  prepare(): Promise<void>;
  bytesWritten(): Promise<number>;
  dump(args: string[], options: PgToolsOptions & { url: string; cancelSignal: AbortSignal }): Promise<void>;
  check(signal: AbortSignal): Promise<WrittenArchive>;
  /** Removes whatever temporary file or folder is left. */
  cleanup(): Promise<void>;
}

function customWriter(temporary: string, key: BackupKey | undefined, tools: PgToolsOptions): ArchiveWriter {
  return {
    kind: 'custom',
    temporary,
    // Created here, owner-only, so the dump is never readable by others, not even briefly.
    prepare: async () => (await open(temporary, 'wx', 0o600)).close(),
    bytesWritten: async () => (await stat(temporary)).size,
    dump: (args, options) => (key ? dumpEncrypted(args, temporary, key, options) : dumpPlain(args, temporary, options)),
    async check(signal) {
      const check = await checkArchive(temporary, { ...tools, key, signal });
      if (check.listingError)
        throw new CliError(ExitCode.failed, `pg_dump wrote an unreadable archive: ${check.listingError}`);
      return { ...check, files: null };
    },
    cleanup: () => unlink(temporary).catch(() => undefined),
  };
}

/**
 * A directory archive. pg_dump writes files, not a stream, so an encrypted one is first written
 * in plain to an owner-only temporary folder, then encrypted file by file into the backup's
 * folder, each plaintext file removed as soon as its ciphertext is written.
 */
function directoryWriter(
  base: string,
  key: BackupKey | undefined,
  jobs: number,
  tools: PgToolsOptions,
  work: string,
): ArchiveWriter {
  const temporary = partialPathOf(`${base}.dump.d`);
  // The plaintext of an encrypted one is written in the work folder (LMS_WORK_DIR), which need
  // not be synced off-site like the backup folder.
  const plain = key ? partialPathOf(path.join(work, `${path.basename(base)}.plain.dump.d`)) : temporary;
  // A plain archive is checksummed while pg_dump writes it; an encrypted one when it is encrypted.
  let follower: FolderFollower | null = null;
  return {
    kind: 'directory',
    temporary,
    // pg_dump accepts an empty folder: created here, owner-only.
    prepare: () => mkdir(plain, { mode: 0o700 }).then(() => undefined),
    bytesWritten: () => folderSize(plain),
    async dump(args, options) {
      if (!key) follower = followFolder(plain);
      try {
        await startPgTool('pg_dump', [...args, `--jobs=${jobs}`, `--file=${plain}`], options);
      } catch (error) {
        follower?.stop();
        throw toolFailure('pg_dump', error);
      }
    },
    async check(signal) {
      await restrictFolder(plain);
      // Plain, the listing and the checksums read the same files at once; encrypted, the listing
      // must come first (encryption removes each plaintext file, toc.dat among them).
      const listing = listArchiveFile(plain, { ...tools, signal });
      const hashed = follower ? follower.finish(signal) : null;
      hashed?.catch(() => undefined);
      const listed = await listing;
      if (listed.error) throw new CliError(ExitCode.failed, `pg_dump wrote an unreadable archive: ${listed.error}`);
      const files = key ? await encryptFolder(plain, temporary, key, signal) : await (hashed ?? hashFolder(temporary));
      if (key) await removeFolder(plain);
      const header = key ? await readEncryptionHeader(path.join(temporary, TOC_FILE)) : null;
      return {
        sha256: setChecksum(files),
        sizeBytes: files.reduce((sum, file) => sum + file.sizeBytes, 0),
        encryption: header,
        files,
        listing: listed.listing,
      };
    },
    async cleanup() {
      follower?.stop();
      await removeFolder(plain);
      await removeFolder(temporary);
    },
  };
}

/**
 * Dumps the database into the backup folder as a verified, optionally encrypted archive — one
 * custom-format file, or with `jobs` above 1 a directory-format folder dumped in parallel — with
 * its signed manifest. The dump and the manifest's row counts come from one exported snapshot;
 * the archive gets its final name only once complete and checked.
 */
export async function backup(ctx: CommandContext, options: BackupOptions = {}): Promise<BackupResult> {
  const tools = toolsOf(ctx);
  // Asked while the pooler check connects: on Debian `pg_dump` is a Perl wrapper that takes about
  // 0.07 s to start. Awaited where it was before, so a missing pg_dump is reported as then.
  const version = pgToolVersion('pg_dump', tools);
  version.catch(() => undefined);
  const { url, source } = requireSessionDatabase(ctx);
  const dir = backupDirOf(ctx, options.dir);
  if (options.compress !== undefined && !COMPRESS_PATTERN.test(options.compress)) {
    throw usageError(`--compress ${options.compress}: expected 0-9 (gzip level) or none, gzip[:N], lz4[:N], zstd[:N]`);
  }
  const jobs = options.jobs ?? ctx.config.BACKUP_JOBS;
  if (!Number.isInteger(jobs) || jobs < 1) throw usageError(`--jobs ${jobs}: expected a whole number of at least 1`);
  const kind: ArchiveKind = jobs > 1 ? 'directory' : 'custom';
  const compress = options.compress ?? (kind === 'directory' ? DIRECTORY_DEFAULT_COMPRESS : undefined);
  const key = options.encrypt ? await backupKeyOf(ctx, dir, '--encrypt') : undefined;
  // With a key configured every manifest is signed with it, encrypted or not: a plain digest can
  // be recomputed by anyone who can write the folder. Read now, so a bad key file stops the
  // backup before pg_dump starts.
  const signingKey = key ?? (ctx.config.LMS_BACKUP_KEY_FILE ? await backupKeyOf(ctx, dir, 'signing') : undefined);
  const pgDump = await version;
  await ensureBackupDir(dir);
  for (const name of await removeStalePartials(dir)) ctx.out.debug(`removed ${name} left by an interrupted backup`);

  const where = describePostgresUrl(url);
  const startedAt = new Date();
  // Hidden, and unique even for backups started in the same second.
  const base = path.join(dir, `.${backupFileName(startedAt).replace(/\.dump$/, '')}.${randomBytes(4).toString('hex')}`);
  const writer =
    kind === 'directory'
      ? directoryWriter(base, key, jobs, tools, key ? await workDirOf(ctx, dir) : dir)
      : customWriter(partialPathOf(`${base}.dump`), key, tools);
  // The lock is shared with other backups and restores and keeps `lmsctl db maintain` away while
  // this runs. Both connections at once; the work connection is checked for a pooler (a session
  // lock taken through one would stay behind on a pooled connection) before the lock is taken.
  const [lockOpened, connected] = await Promise.allSettled([
    openLockSession(url, 'lmsctl backup'),
    connectClient(url, { applicationName: 'lmsctl backup' }),
  ]);
  const closeBoth = async () => {
    if (lockOpened.status === 'fulfilled') await lockOpened.value.release();
    if (connected.status === 'fulfilled') await connected.value.end().catch(() => undefined);
  };
  try {
    if (connected.status === 'fulfilled') await refuseConnectionThroughPooler(connected.value, url, source, 'back up');
    if (lockOpened.status === 'rejected') throw lockOpened.reason;
    if (connected.status === 'rejected') throw connected.reason;
    await lockOpened.value.lock('shared', 'back up');
  } catch (error) {
    await closeBoth();
    throw error;
  }
  const lock = lockOpened.value;
  const client = connected.value;

  return withInterrupt(async (signal) => {
    let published: string | null = null;
    try {
      const facts = await openSnapshot(client, url);
      assertDumpCanReadServer(pgDump, Math.floor(facts.serverVersionNum / 10000), facts.serverVersion);
      ctx.out.info(
        `backing up ${where.database} on ${where.host}:${where.port} (${formatBytes(facts.databaseSizeBytes)}, ${facts.tables.length} tables)` +
          `${kind === 'directory' ? `, ${jobs} jobs into a directory archive` : ''}${key ? ', encrypted' : ''}`,
      );

      await writer.prepare();
      let bytesWritten = 0;
      const sizePoll = setInterval(() => {
        writer.bytesWritten().then(
          (size) => (bytesWritten = size),
          () => undefined,
        );
      }, 500);
      sizePoll.unref();
      const progress = startProgress(ctx.out, 'dumping', (elapsed) => describeTransfer(bytesWritten, elapsed));
      try {
        const dumpArgs = [`--format=${kind}`, `--snapshot=${facts.snapshot}`, '--no-password'];
        if (compress !== undefined) dumpArgs.push(`--compress=${compress}`);
        ctx.out.debug(`snapshot ${facts.snapshot} exported; starting pg_dump ${pgDump.version}`);
        const dumpStarted = Date.now();
        // A failed count stops pg_dump too, rather than leaving it to read the whole database.
        const countFailed = new AbortController();
        const cancelSignal = AbortSignal.any([signal, countFailed.signal]);
        const dumped = writer.dump(dumpArgs, { ...tools, url, cancelSignal });
        // The counts run on the exporting connection while pg_dump reads the same snapshot,
        // without parallel workers: they should fill the CPU pg_dump leaves idle, not compete.
        if (options.counts !== false) await client.query('SET LOCAL max_parallel_workers_per_gather = 0');
        const counting =
          options.counts === false
            ? Promise.resolve(null)
            : countRows(client, facts.tables).catch((error: unknown) => {
                countFailed.abort(error);
                throw error;
              });
        // Both settle before anything goes on: a cancelled pg_dump is awaited, not left running.
        const [dumpResult, countResult] = await Promise.allSettled([dumped, counting]);
        if (countResult.status === 'rejected') throw countResult.reason;
        if (dumpResult.status === 'rejected') throw dumpResult.reason;
        const tables = countResult.value;
        await client.query('COMMIT');
        ctx.out.debug(`pg_dump and row counts done in ${formatDuration(Date.now() - dumpStarted)}`);

        const checkStarted = Date.now();
        const check = await writer.check(signal);
        ctx.out.debug(
          `checksum${key ? ', encryption' : ''} and archive listing in ${formatDuration(Date.now() - checkStarted)}`,
        );
        const finishedAt = new Date();
        published = await publishDump(writer.temporary, dir, startedAt, kind);
        const manifest: BackupManifest = signManifest(
          {
            format: MANIFEST_FORMAT,
            formatVersion: kind === 'directory' ? 2 : 1,
            file: path.basename(published),
            ...(kind === 'directory' ? { archive: kind, files: check.files ?? [], jobs } : {}),
            sha256: check.sha256,
            sizeBytes: check.sizeBytes,
            encryption: check.encryption && { algorithm: ENCRYPTION_ALGORITHM, ...check.encryption },
            compression: compress ?? null,
            database: { ...facts.identity, sizeBytes: facts.databaseSizeBytes },
            server: { version: facts.serverVersion, versionNum: facts.serverVersionNum },
            pgDump: { version: check.listing.dumpedBy ?? pgDump.version },
            migration: facts.migration,
            tables,
            startedAt: startedAt.toISOString(),
            finishedAt: finishedAt.toISOString(),
            durationMs: finishedAt.getTime() - startedAt.getTime(),
            lmsctl: { version: lmsctlVersion },
          },
          signingKey,
        );
        await writeManifest(manifestPathOf(published), manifest);
        await writeVerification(published, {
          checkedAt: finishedAt.toISOString(),
          ok: true,
          sha256: check.sha256,
          detail: `written and checked by lmsctl backup (${check.listing.entries} archive entries)`,
        });
        await publishMetrics(ctx, where.database, 'backup', [
          {
            name: 'lms_backup_last_success_timestamp_seconds',
            help: 'When the last successful lmsctl backup finished (Unix time).',
            value: finishedAt.getTime() / 1000,
          },
          {
            name: 'lms_backup_size_bytes',
            help: 'Size of the last successful backup (the sum of its files for a directory backup).',
            value: check.sizeBytes,
          },
        ]);
        const rows = tables ? Object.values(tables).reduce((sum, count) => sum + count, 0) : null;
        return {
          file: published,
          manifest: manifestPathOf(published),
          archive: kind,
          jobs,
          sizeBytes: check.sizeBytes,
          sha256: check.sha256,
          encrypted: Boolean(key),
          signed: Boolean(signingKey),
          database: facts.identity,
          tables: tables ? Object.keys(tables).length : null,
          rows,
          migration: facts.migration?.version ?? null,
          startedAt: startedAt.toISOString(),
          durationMs: finishedAt.getTime() - startedAt.getTime(),
        };
      } finally {
        clearInterval(sizePoll);
        progress.stop();
      }
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (published) await rm(published, { recursive: true, force: true }).catch(() => undefined);
      if (signal.aborted) {
        throw new CliError(ExitCode.failed, `${(signal.reason as InterruptedError).message}: no backup was written`);
      }
      throw error;
    } finally {
      await writer.cleanup();
      await client.end().catch(() => undefined);
      await lock.release();
    }
  }, options.signal);
}

async function dumpPlain(
  args: string[],
  target: string,
  options: PgToolsOptions & { url: string; cancelSignal: AbortSignal },
): Promise<void> {
  // Straight to a seekable file: pg_dump then records data offsets, which parallel restore needs.
  try {
    await startPgTool('pg_dump', [...args, `--file=${target}`], options);
  } catch (error) {
    throw toolFailure('pg_dump', error);
  }
}

async function dumpEncrypted(
  args: string[],
  target: string,
  key: BackupKey,
  options: PgToolsOptions & { url: string; cancelSignal: AbortSignal },
): Promise<void> {
  // Plaintext never touches the disk: pg_dump's output is encrypted on its way to the file.
  const dump = startPgTool('pg_dump', args, { ...options, stdout: 'pipe' });
  try {
    await Promise.all([
      pipeline(dump.stdout!, createEncryptStream(key), createWriteStream(target, { flags: 'r+' })),
      dump,
    ]);
  } catch (error) {
    dump.kill();
    await dump.catch(() => undefined);
    // A full disk fails the stream's write, which names no file: name the backup folder.
    throw toolFailure('pg_dump', withPath(error, path.dirname(target)));
  }
}
