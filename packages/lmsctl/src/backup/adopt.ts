import { cp, copyFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { connectClient, describePostgresUrl, VerificationError, withDatabase } from '@lms/core/essentials';
import { requireDirectDatabaseUrl, type CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import { createDatabase, dropAbandonedDatabases, dropDatabase, markerFor, setComment } from '../postgres/admin.js';
import { deepReadArchive, deepReadError, listArchiveFile, sha256OfFile } from './archive/check.js';
import { readEncryptionHeader } from './archive/crypto.js';
import { hashFolder, removeFolder, storedFilesOf, TOC_FILE } from './archive/directory.js';
import {
  MANIFEST_FORMAT,
  manifestPathOf,
  setChecksum,
  signManifest,
  writeManifest,
  type ArchiveFile,
} from './archive/manifest.js';
import { partialPathOf, removeStalePartials } from './archive/partial-files.js';
import {
  BACKUP_FILE_PATTERN,
  ensureBackupDir,
  listBackupFiles,
  publishDump,
  writeVerification,
  type ArchiveKind,
} from './archive/store.js';
import { countInParallel, listTables, newestMigration } from './catalog.js';
import { backupDirOf, backupKeyOf, toolsOf } from './context.js';
import { identityOfConnection } from './identity.js';
import { runPgRestore } from './restore-engine.js';
import { databaseStamp, defaultJobs } from './stamp.js';
import { lmsctlVersion } from '../version.js';
import type { ArchiveListing } from '../postgres/tools.js';

/**
 * `backup adopt`: makes a pg_dump archive lmsctl did not write (the old scripts'
 * `lms_20250101_020000.dump`, a DBA's folder dump) a backup like any other. Nothing is taken on
 * trust: the archive is read to its end by pg_restore, restored once into a scratch database
 * where every table is counted (the manifest's counts come from the backup itself), and only
 * then does it get a manifest — marked adopted, saying when and how.
 */

export interface AdoptOptions {
  dir?: string;
  /** Every dump in the backup folder that has no manifest. */
  all?: boolean;
  /** pg_restore jobs and counting lanes of the scratch restore (default: CPUs, at most 4). */
  jobs?: number;
  signal?: AbortSignal;
}

export interface AdoptedBackup {
  /** The backup as it now lies in the backup folder. */
  file: string;
  /** What was named, when it was copied in from elsewhere; null when adopted in place. */
  copiedFrom: string | null;
  archive: ArchiveKind;
  /** The source database, as the archive's header names it. */
  database: string;
  /** When pg_dump wrote it (its header), or the file's time when the header has none. */
  takenAt: string;
  tables: number;
  rows: number;
  migration: number | null;
  sizeBytes: number;
  sha256: string;
}

export interface AdoptResult {
  dir: string;
  adopted: AdoptedBackup[];
}

/** `15.20` → 150020, `9.6.24` → 90624, as server_version_num reads. */
function versionNumOf(version: string | null): number {
  const [major = 0, minor = 0, patch = 0] = (version ?? '').split('.').map((part) => Number.parseInt(part, 10) || 0);
  return major >= 10 ? major * 10000 + minor : major * 10000 + minor * 100 + patch;
}

/** What the user named, as a path: a file or a folder (a trailing separator allowed). */
async function locate(ctx: CommandContext, dir: string, spec: string): Promise<{ path: string; kind: ArchiveKind }> {
  const named = spec.replace(/[/\\]+$/, '') || spec;
  const candidates = [path.resolve(ctx.cwd, named)];
  if (!named.includes('/') && !named.includes('\\')) candidates.push(path.join(dir, named));
  for (const candidate of candidates) {
    const info = await stat(candidate).catch(() => null);
    if (info?.isFile()) return { path: candidate, kind: 'custom' };
    if (info?.isDirectory()) return { path: candidate, kind: 'directory' };
  }
  throw usageError(`not found: ${spec}`, 'name a pg_dump archive: a custom-format file or a directory-format folder');
}

/**
 * The archive's deep read (split over `jobs` pg_restore processes) and listing, at once: every
 * data block readable, and a header that names its database. VerificationError (exit 3) otherwise.
 */
async function checkSource(
  ctx: CommandContext,
  source: string,
  kind: ArchiveKind,
  options: { jobs: number; signal: AbortSignal },
): Promise<ArchiveListing & { database: string }> {
  const name = path.basename(source);
  if (kind === 'directory') {
    const files = await storedFilesOf(source);
    if (!files.some((file) => file.name === TOC_FILE)) {
      throw new VerificationError(`${name} is a folder without ${TOC_FILE}: not a pg_dump directory-format archive`);
    }
  } else if (await readEncryptionHeader(source)) {
    throw new VerificationError(
      `${name} was encrypted by lmsctl and has lost its manifest: it cannot be adopted (restore the manifest from a copy, e.g. a bundle)`,
    );
  }
  const tools = { ...toolsOf(ctx), signal: options.signal };
  const [listed, deepError] = await Promise.all([
    listArchiveFile(source, tools),
    deepReadArchive(source, { ...tools, jobs: options.jobs }),
  ]);
  if (listed.error) throw new VerificationError(`${name} is not a readable pg_dump archive: ${listed.error}`);
  if (deepError) throw deepReadError(name, deepError);
  const database = listed.listing.database;
  if (!database) throw new VerificationError(`${name}: its header names no database, so its source is unknown`);
  return { ...listed.listing, database };
}

/** Restores the archive into a scratch database, counts every table, and always drops it. */
async function countInScratch(
  ctx: CommandContext,
  url: string,
  source: string,
  origin: string,
  options: { jobs: number; signal: AbortSignal },
): Promise<{
  tables: Record<string, number>;
  migration: { version: number; name: string } | null;
  sizeBytes: number;
  scratch: string;
}> {
  const admin = await connectClient(withDatabase(url, 'postgres'), { applicationName: 'lmsctl backup adopt' });
  // Two adoptions in one second (adopt --all) must not share a name.
  const scratch = `lms_adopt_${databaseStamp()}_${Math.random().toString(36).slice(2, 8)}`;
  let created = false;
  try {
    await dropAbandonedDatabases(admin, origin, (line) => ctx.out.info(line));
    await createDatabase(admin, scratch, null);
    created = true;
    await setComment(
      admin,
      scratch,
      JSON.stringify(markerFor('drill', { backup: path.basename(source), target: origin })),
    );
    // Privileges name the source's roles, which this server may not have: only the data counts here.
    await runPgRestore(ctx, source, {
      url,
      database: scratch,
      jobs: options.jobs,
      noAcl: true,
      signal: options.signal,
    });
    const scratchUrl = withDatabase(url, scratch);
    const client: pg.Client = await connectClient(scratchUrl, { applicationName: 'lmsctl backup adopt' });
    try {
      const tables = await countInParallel(scratchUrl, client, await listTables(client), {
        jobs: options.jobs,
        signal: options.signal,
        analyze: false,
      });
      const { rows } = await client.query<{ size: string }>('SELECT pg_database_size(current_database()) AS size');
      return { tables, migration: await newestMigration(client), sizeBytes: Number(rows[0]!.size), scratch };
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    if (created) await dropDatabase(admin, scratch).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}

/**
 * Puts the archive into the backup folder under a backup's name, unless it already lies there
 * under one: copied (never moved: the original stays where it was) to a temporary name first.
 */
async function placeInFolder(source: string, kind: ArchiveKind, dir: string, takenAt: Date): Promise<string> {
  if (path.dirname(source) === dir && BACKUP_FILE_PATTERN.test(path.basename(source))) return source;
  // Named like lmsctl's other temporary files, so a killed adoption's copy is swept like theirs.
  const temporary = partialPathOf(path.join(dir, `.lms_adopting.${kind === 'directory' ? 'dump.d' : 'dump'}`));
  try {
    if (kind === 'directory') await cp(source, temporary, { recursive: true, errorOnExist: true });
    else await copyFile(source, temporary);
    return await publishDump(temporary, dir, takenAt, kind);
  } finally {
    await removeFolder(temporary);
  }
}

/** Checksum and size of the archive as it lies in the folder (and each file of a folder). */
async function measure(
  file: string,
  kind: ArchiveKind,
  signal: AbortSignal,
): Promise<{ sha256: string; sizeBytes: number; files: ArchiveFile[] | null }> {
  if (kind === 'directory') {
    const files = await hashFolder(file, signal);
    return { sha256: setChecksum(files), sizeBytes: files.reduce((sum, entry) => sum + entry.sizeBytes, 0), files };
  }
  return { sha256: await sha256OfFile(file, signal), sizeBytes: (await stat(file)).size, files: null };
}

async function adoptOne(
  ctx: CommandContext,
  url: string,
  dir: string,
  target: { path: string; kind: ArchiveKind },
  options: { jobs: number; signal: AbortSignal },
): Promise<AdoptedBackup> {
  const name = path.basename(target.path);
  if (await stat(manifestPathOf(target.path)).catch(() => null)) {
    throw usageError(`${name} already has a manifest: it is a backup`, '`lmsctl backup verify` checks it');
  }
  ctx.out.info(`adopting ${target.path}: reading every block, then restoring it into a scratch database to count`);
  const listing = await checkSource(ctx, target.path, target.kind, options);
  const counted = await countInScratch(ctx, url, target.path, listing.database, options);
  const takenAt = listing.createdAt ?? (await stat(target.path)).mtime;
  const file = await placeInFolder(target.path, target.kind, dir, takenAt);
  const measured = await measure(file, target.kind, options.signal);
  const admin = await connectClient(withDatabase(url, 'postgres'), { applicationName: 'lmsctl backup adopt' });
  const server = await identityOfConnection(admin, withDatabase(url, 'postgres')).finally(() =>
    admin.end().catch(() => undefined),
  );
  const signingKey = ctx.config.LMS_BACKUP_KEY_FILE ? await backupKeyOf(ctx, dir, 'signing') : undefined;
  const now = new Date().toISOString();
  const where = describePostgresUrl(url);
  const manifest = signManifest(
    {
      format: MANIFEST_FORMAT,
      formatVersion: target.kind === 'directory' ? 2 : 1,
      file: path.basename(file),
      ...(target.kind === 'directory' ? { archive: 'directory' as const, files: measured.files ?? [] } : {}),
      sha256: measured.sha256,
      sizeBytes: measured.sizeBytes,
      encryption: null,
      compression: listing.compression,
      // The header names the database; the server is the one it is adopted against (its name
      // alone would make `latest` of every server's database of that name pick it).
      database: {
        name: listing.database,
        host: server.host,
        port: server.port,
        ...(server.systemIdentifier ? { systemIdentifier: server.systemIdentifier } : {}),
        sizeBytes: counted.sizeBytes,
      },
      server: { version: listing.dumpedFrom ?? 'unknown', versionNum: versionNumOf(listing.dumpedFrom) },
      pgDump: { version: listing.dumpedBy ?? 'unknown' },
      migration: counted.migration,
      tables: counted.tables,
      startedAt: takenAt.toISOString(),
      finishedAt: takenAt.toISOString(),
      durationMs: 0,
      lmsctl: { version: lmsctlVersion },
      adopted: {
        at: now,
        how:
          `every data block read by pg_restore; restored into the scratch database ${counted.scratch} on ${where.host}:${where.port} ` +
          `(dropped after) and every table counted; source database from the archive's header, server from the adopting connection`,
        lmsctl: lmsctlVersion,
      },
    },
    signingKey,
  );
  await writeManifest(manifestPathOf(file), manifest);
  await writeVerification(file, {
    checkedAt: now,
    ok: true,
    sha256: measured.sha256,
    detail: `adopted by lmsctl backup adopt (${listing.entries} archive entries, every data block read)`,
    deep: true,
    deepVerifiedAt: now,
  });
  const rows = Object.values(counted.tables).reduce((sum, count) => sum + count, 0);
  return {
    file,
    copiedFrom: file === target.path ? null : target.path,
    archive: target.kind,
    database: listing.database,
    takenAt: takenAt.toISOString(),
    tables: Object.keys(counted.tables).length,
    rows,
    migration: counted.migration?.version ?? null,
    sizeBytes: measured.sizeBytes,
    sha256: measured.sha256,
  };
}

/**
 * Adopts the archive `spec` names, or with `all` every dump in the backup folder without a
 * manifest. Stops at the first archive that fails a check (exit 3, naming it); those adopted
 * before it keep their manifests.
 */
export async function backupAdopt(
  ctx: CommandContext,
  spec: string | undefined,
  options: AdoptOptions = {},
): Promise<AdoptResult> {
  if (spec && options.all) throw usageError('name a file or pass --all, not both');
  if (!spec && !options.all)
    throw usageError('name the dump to adopt, or pass --all for every dump without a manifest');
  const dir = backupDirOf(ctx, options.dir);
  const url = await requireDirectDatabaseUrl(ctx, 'adopt backups');
  await ensureBackupDir(dir);
  await removeStalePartials(dir);
  const targets = spec
    ? [await locate(ctx, dir, spec)]
    : (await listBackupFiles(dir))
        .filter((entry) => !entry.hasManifest)
        .reverse()
        .map((entry) => ({ path: entry.path, kind: entry.kind }));
  const jobs = options.jobs ?? defaultJobs();
  return withInterrupt(async (signal) => {
    const adopted: AdoptedBackup[] = [];
    for (const target of targets) {
      try {
        const done = await adoptOne(ctx, url, dir, target, { jobs, signal });
        adopted.push(done);
        // Said as it happens: a later failure stops the rest, and these stay adopted.
        ctx.out.info(`adopted ${done.file}: ${done.tables} tables, ${done.rows} rows of ${done.database}`);
      } catch (error) {
        if (signal.aborted) {
          throw new CliError(
            ExitCode.failed,
            `${(signal.reason as InterruptedError).message}: ${path.basename(target.path)} was not adopted`,
          );
        }
        throw error;
      }
    }
    return { dir, adopted };
  }, options.signal);
}
