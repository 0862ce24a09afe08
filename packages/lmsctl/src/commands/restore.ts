import { stat, statfs, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import type pg from 'pg';
import { connectClient, describePostgresUrl, formatVersion, VerificationError, withDatabase } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { assertMatchesManifest, decryptToFile, listArchiveFile, sha256OfFile } from '../lib/archive-check.js';
import { WrongKeyError } from '../lib/backup-crypto.js';
import { resolveBackup } from '../lib/backup-catalog.js';
import {
  describeIdentity,
  looksLikeProduction,
  sameDatabase,
  systemIdentifierOf,
  type DatabaseIdentity,
} from '../lib/backup-identity.js';
import { writeVerification } from '../lib/backup-store.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { formatDuration } from '@lms/core/duration';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import { manifestPathOf, readManifest, type BackupManifest } from '../lib/manifest.js';
import { partialPathOf, removeStalePartials } from '../lib/partial-files.js';
import {
  copyDatabaseProperties,
  createDatabase,
  databaseFacts,
  derivedDatabaseName,
  dropDatabase,
  dropAbandonedDatabases,
  isAbandoned,
  markedDatabases,
  markerFor,
  type MarkedDatabase,
  sessionsOn,
  setComment,
  summarizeSessions,
  terminateSessions,
  timestampSuffix,
  type DatabaseFacts,
  type SessionInfo,
} from '../lib/pg-admin.js';
import { pgToolVersion, startPgTool, toolFailure, type ArchiveListing } from '../lib/pg-tools.js';
import { formatBytes, startProgress } from '../lib/progress.js';
import type { PausedQueues } from '../lib/queue-pause.js';
import { table } from '../output.js';
import { backupDirOf, backupKeyOf, countRows, listTables, newestMigration, toolsOf, type TableRef } from './backup.js';

export interface RestoreOptions {
  dir?: string;
  /**
   * The source database's name, repeated: required to restore a backup of another database
   * (another name or another server) than the target; with `latest`, the newest backup of it.
   */
  fromDatabase?: string;
  /** Restore into a database that does not exist yet (else refused: a typo must not "succeed"). */
  create?: boolean;
  /** Restore into this database instead of DATABASE_URL's (e.g. a staging copy). */
  targetDatabaseUrl?: string;
  /** pg_restore --jobs. */
  jobs?: number;
  forceDisconnect?: boolean;
  /** Print what would happen; change nothing. */
  plan?: boolean;
  /** Drop the previous database right after the swap instead of keeping it. */
  dropPrevious?: boolean;
  /** Pause the BullMQ queues for the duration (default true). */
  pauseQueues?: boolean;
  /**
   * ANALYZE the restored tables before the swap, so the planner has statistics from the first
   * query. Off by default: autovacuum analyzes freshly loaded tables within a minute or so.
   */
  analyze?: boolean;
  /** pg_restore --no-acl: skip GRANT/REVOKE (for a server without the source's roles). */
  noAcl?: boolean;
}

/** Advisory lock namespace ("lmsr") that keeps two restores of one database apart. */
const RESTORE_LOCK_CLASS = 0x6c6d7372;

interface Target {
  url: string;
  name: string;
  host: string;
  port: number;
}

function targetOf(ctx: CommandContext, options: RestoreOptions): Target {
  const url = options.targetDatabaseUrl ?? requireDatabaseUrl(ctx);
  const { database, host, port } = describePostgresUrl(url);
  if (!database) throw usageError('the target URL names no database');
  if (['postgres', 'template0', 'template1'].includes(database)) {
    throw usageError(
      `refusing to restore over the system database "${database}"`,
      'name the application database in the URL',
    );
  }
  return { url, name: database, host, port };
}

/** A backup checked and ready for pg_restore, possibly as a decrypted temporary copy. */
interface PreparedArchive {
  dumpPath: string;
  manifest: BackupManifest;
  restorePath: string;
  listing: ArchiveListing;
  /**
   * Settles when the file's SHA-256 has been compared with the manifest: it runs while
   * pg_restore fills the new database, and the swap waits for it (a mismatch aborts, exit 3).
   */
  checksum: Promise<void>;
  dispose(): Promise<void>;
}

/**
 * What must hold before the server is asked to do anything: the manifest's signature, the
 * file's size and a readable archive listing — and for an encrypted backup its decryption,
 * which authenticates every chunk and computes the checksum on the way. Exit 3 otherwise.
 */
export async function prepareArchive(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  signal: AbortSignal,
): Promise<PreparedArchive> {
  const recordFailure = (error: unknown) => recordVerificationFailure(dumpPath, error);
  try {
    const archive = await prepareArchiveUnrecorded(ctx, dumpPath, dir, signal);
    const checksum = archive.checksum.catch(async (error: unknown) => {
      await recordFailure(error);
      throw error;
    });
    checksum.catch(() => undefined);
    return { ...archive, checksum };
  } catch (error) {
    await recordFailure(error);
    throw error;
  }
}

/**
 * A backup found corrupt by a restore or drill is recorded as such, as `backup verify` would:
 * `backup list` and `migrate --require-backup` must not keep trusting an older successful
 * verification. A wrong key says nothing about the backup.
 */
async function recordVerificationFailure(dumpPath: string, error: unknown): Promise<void> {
  if (!(error instanceof VerificationError) || error instanceof WrongKeyError) return;
  const detail = `${error.message} (found by a restore or drill)`;
  await writeVerification(dumpPath, { checkedAt: new Date().toISOString(), ok: false, sha256: null, detail }).catch(
    () => undefined,
  );
}

async function prepareArchiveUnrecorded(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  signal: AbortSignal,
): Promise<PreparedArchive> {
  // Decrypted copies left by a killed restore or drill hold plaintext: gone before anything else.
  await removeStalePartials(dir);
  let key: Awaited<ReturnType<typeof backupKeyOf>> | undefined;
  const getKey = async () => (key ??= await backupKeyOf(ctx, dir, 'this backup'));
  const manifest = await readManifest(manifestPathOf(dumpPath), getKey);
  const name = path.basename(dumpPath);
  if (manifest.file !== name) throw new VerificationError(`manifest names ${manifest.file}, not ${name}`);
  const tools = toolsOf(ctx);
  const sizeBytes = (await stat(dumpPath)).size;

  if (!manifest.encryption) {
    assertMatchesManifest({ sizeBytes, sha256: manifest.sha256, listingError: null }, manifest, name);
    const { listing, error } = await listArchiveFile(dumpPath, { ...tools, signal });
    assertMatchesManifest({ sizeBytes, sha256: manifest.sha256, listingError: error }, manifest, name);
    const checksum = sha256OfFile(dumpPath, signal).then((sha256) =>
      assertMatchesManifest({ sizeBytes, sha256, listingError: null }, manifest, name),
    );
    // Observed by the caller later; never an unhandled rejection in between.
    checksum.catch(() => undefined);
    return { dumpPath, manifest, restorePath: dumpPath, listing, checksum, dispose: () => Promise.resolve() };
  }

  const backupKey = await getKey();
  // pg_restore --jobs needs a seekable file: decrypt beside the backups, owner-only, removed after.
  const decrypted = partialPathOf(path.join(path.dirname(dumpPath), `.${name}`));
  const dispose = () => unlink(decrypted).catch(() => undefined);
  try {
    // The checksum and size in the manifest are of the encrypted file.
    const sha256 = await decryptToFile(dumpPath, backupKey, decrypted, signal);
    assertMatchesManifest({ sizeBytes, sha256, listingError: null }, manifest, name);
    const { listing, error } = await listArchiveFile(decrypted, { ...tools, signal });
    assertMatchesManifest({ sizeBytes, sha256, listingError: error }, manifest, name);
    return { dumpPath, manifest, restorePath: decrypted, listing, checksum: Promise.resolve(), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

export interface RestorePlan {
  plan: true;
  backup: {
    file: string;
    takenAt: string;
    sizeBytes: number;
    encrypted: boolean;
    database: string;
    serverVersion: string;
    pgDumpVersion: string;
    migration: number | null;
    tables: number | null;
    rows: number | null;
  };
  archive: { entries: number; byType: Record<string, number> };
  target: {
    database: string;
    host: string;
    port: number;
    exists: boolean;
    sizeBytes: number | null;
    owner: string | null;
    serverVersion: string;
  };
  sessions: Array<{ applicationName: string; user: string; pid: number }>;
  disk: { neededBytes: number; freeBytes: number | null; where: string | null };
  compatibility: string[];
  steps: string[];
}

export interface RestoreResult {
  plan: false;
  backup: string;
  target: { database: string; host: string; port: number };
  previous: string | null;
  previousDropped: boolean;
  tables: number | null;
  rows: number | null;
  migration: number | null;
  disconnected: number;
  queuesPaused: string[];
  warnings: string[];
  durations: { verifyMs: number; restoreMs: number; checkMs: number; swapMs: number; totalMs: number };
}

async function serverFacts(client: pg.Client): Promise<{ version: string; major: number; superuser: boolean }> {
  const { rows } = await client.query<{ version: string; num: string; superuser: string }>(
    `SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
            current_setting('is_superuser') AS superuser`,
  );
  const row = rows[0]!;
  return {
    version: row.version.split(' ')[0]!,
    major: Math.floor(Number(row.num) / 10000),
    superuser: row.superuser === 'on',
  };
}

/** Free space where the server keeps its data, when the server runs on this machine and says where. */
async function freeDiskOf(
  client: pg.Client,
  host: string,
): Promise<{ freeBytes: number | null; where: string | null }> {
  const local = host.startsWith('/') || ['localhost', '127.0.0.1', '::1'].includes(host);
  if (!local) return { freeBytes: null, where: null };
  try {
    const { rows } = await client.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
    const dir = rows[0]!.dir;
    const info = await statfs(dir);
    return { freeBytes: info.bavail * info.bsize, where: dir };
  } catch {
    return { freeBytes: null, where: null };
  }
}

function compatibilityNotes(manifest: BackupManifest, serverMajor: number, pgRestoreMajor: number): string[] {
  const notes: string[] = [];
  const sourceMajor = Math.floor(manifest.server.versionNum / 10000);
  const dumpMajor = Number(manifest.pgDump.version.split('.')[0]);
  notes.push(
    pgRestoreMajor >= dumpMajor
      ? `pg_restore ${pgRestoreMajor} reads archives of pg_dump ${manifest.pgDump.version}`
      : `pg_restore ${pgRestoreMajor} is older than the pg_dump ${manifest.pgDump.version} that wrote the backup`,
  );
  notes.push(
    serverMajor >= sourceMajor
      ? `target server ${serverMajor} ≥ source server ${manifest.server.version}`
      : `target server ${serverMajor} is older than the source ${manifest.server.version}: the restore may fail on newer syntax`,
  );
  return notes;
}

/**
 * Restores a verified backup without ever leaving a half-restored database: into a new
 * database beside the target, checked table by table against the manifest, then swapped in
 * by renaming both in one transaction. The previous database is kept (or dropped on request).
 */
export async function restore(
  ctx: CommandContext,
  spec: string,
  options: RestoreOptions = {},
): Promise<RestoreResult | RestorePlan> {
  const dir = backupDirOf(ctx, options.dir);
  const target = targetOf(ctx, options);
  const jobs = options.jobs ?? Math.min(4, os.availableParallelism());
  const tools = toolsOf(ctx);
  const started = Date.now();

  return withInterrupt(async (signal) => {
    const pgRestore = await pgToolVersion('pg_restore', tools);
    const admin = await connectClient(withDatabase(target.url, 'postgres'), { applicationName: 'lmsctl restore' });
    let archive: PreparedArchive | undefined;
    try {
      const server = await serverFacts(admin);
      const existing = await databaseFacts(admin, target.name);
      const systemIdentifier = await systemIdentifierOf(admin);
      const addressed: DatabaseIdentity = {
        name: target.name,
        host: target.host,
        port: target.port,
        ...(systemIdentifier ? { systemIdentifier } : {}),
      };
      const dumpPath = await resolveBackup(
        dir,
        spec,
        ctx.cwd,
        options.fromDatabase ? { kind: 'name', name: options.fromDatabase } : { kind: 'database', database: addressed },
      );
      // Whose backup this is decides before anything else is read or decrypted; the manifest's
      // signature is checked here, so an edited source name cannot slip past.
      const source = await checkSource(ctx, dumpPath, dir, addressed, options.fromDatabase);
      if (!existing && !options.create && !options.plan) {
        throw usageError(
          `database ${target.name} does not exist on ${target.host}:${target.port}; nothing was restored`,
          'check the name in the URL, or pass --create to restore into a new database of that name',
        );
      }
      archive = await prepareArchive(ctx, dumpPath, dir, signal);
      const verifyMs = Date.now() - started;
      const sessions = existing ? await sessionsOn(admin, target.name) : [];
      const { manifest } = archive;

      if (options.plan) {
        await archive.checksum;
        return buildPlan(
          archive,
          target,
          existing,
          sessions,
          server,
          pgRestore.major,
          await freeDiskOf(admin, target.host),
          options,
        );
      }

      const lock = await admin.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [
        RESTORE_LOCK_CLASS,
        target.name,
      ]);
      if (!lock.rows[0]?.locked) {
        throw new CliError(
          ExitCode.failed,
          `another lmsctl restore of ${target.name} on ${target.host}:${target.port} is running`,
        );
      }
      refuseSessions(sessions, target, options);

      const what =
        `backup ${path.basename(dumpPath)} of database ${describeIdentity(source)}, taken ${manifest.finishedAt} ` +
        `(${describeContents(manifest)})`;
      if (existing) {
        ctx.out.info(
          `restoring ${what} over database ${target.name} on ${target.host}:${target.port} (${formatBytes(existing.sizeBytes)} now). ` +
            `Its current contents are replaced; the old database is kept as a renamed copy${options.dropPrevious ? ' and then dropped' : ' until `lmsctl restore cleanup`'}.` +
            (sessions.length
              ? ` ${sessions.length} session(s) (${summarizeSessions(sessions)}) will be disconnected.`
              : ''),
        );
        await confirmOrRefuse(
          `Replace database ${target.name} on ${target.host}:${target.port} with the backup of ${source.name} from ${manifest.finishedAt}?`,
          {
            yes: ctx.yes,
            action: `replace database ${target.name} on ${target.host}`,
            // A production-looking database is confirmed by typing its name, not by a reflex "y".
            typeToConfirm: looksLikeProduction(target.name) ? target.name : undefined,
          },
        );
      } else {
        ctx.out.info(`restoring ${what} into the new database ${target.name} on ${target.host}:${target.port}`);
      }

      await dropAbandonedDatabases(admin, (line) => ctx.out.info(line));
      const warnings: string[] = [];
      const stamp = timestampSuffix();
      const building = derivedDatabaseName(target.name, `_restoring_${stamp}`);
      // Pausing loads the queue library and talks to Redis: let that overlap with pg_restore.
      const pausing = pauseQueuesFor(ctx, options);
      pausing.catch(() => undefined);
      let queues: PausedQueues | null = null;
      try {
        await createDatabase(admin, building, existing);
        await setComment(
          admin,
          building,
          JSON.stringify(markerFor('restore-in-progress', { target: target.name, backup: manifest.file })),
        );

        const restoreStarted = Date.now();
        // A failed pause stops pg_restore too; an interruption stops both.
        const restoreAbort = new AbortController();
        const forwardAbort = () => restoreAbort.abort(signal.reason);
        signal.addEventListener('abort', forwardAbort, { once: true });
        const stopRestoreOnFailure = (error: unknown) => {
          restoreAbort.abort(error);
          throw error;
        };
        const [checked, paused, restored] = await Promise.allSettled([
          archive.checksum.catch(stopRestoreOnFailure),
          pausing.catch(stopRestoreOnFailure),
          runPgRestore(ctx, archive.restorePath, {
            url: target.url,
            database: building,
            jobs,
            noAcl: options.noAcl,
            signal: restoreAbort.signal,
          }),
        ]);
        signal.removeEventListener('abort', forwardAbort);
        if (checked.status === 'rejected') throw checked.reason;
        if (paused.status === 'rejected') throw paused.reason;
        queues = paused.value;
        if (restored.status === 'rejected') throw restored.reason;
        const restoreMs = Date.now() - restoreStarted;

        const checkStarted = Date.now();
        const counted = await checkRestored(
          withDatabase(target.url, building),
          manifest,
          jobs,
          options.analyze === true,
          signal,
        );
        if (existing)
          warnings.push(
            ...(await copyDatabaseProperties(admin, existing, building)).map(
              (p) => `not copied to the restored database: ${p}`,
            ),
          );
        const checkMs = Date.now() - checkStarted;
        if (signal.aborted) throw signal.reason;

        const swapStarted = Date.now();
        const previous = existing ? derivedDatabaseName(target.name, `_pre_restore_${stamp}`) : null;
        const disconnected = await swapIn(admin, {
          target,
          building,
          previous,
          existing,
          forceDisconnect: options.forceDisconnect ?? false,
          manifest,
        });
        const swapMs = Date.now() - swapStarted;

        // The restore is done: a previous copy that cannot be dropped now is a warning, not a
        // failure (the catch below would wrongly report the target as unchanged).
        let previousDropped = false;
        if (previous && options.dropPrevious) {
          try {
            await dropDatabase(admin, previous);
            previousDropped = true;
          } catch (error) {
            warnings.push(
              `the previous database ${previous} could not be dropped (${(error as Error).message}): drop it with \`lmsctl restore cleanup\``,
            );
          }
        }
        return {
          plan: false,
          backup: dumpPath,
          target: { database: target.name, host: target.host, port: target.port },
          previous: previousDropped ? null : previous,
          previousDropped,
          tables: counted.tables,
          rows: counted.rows,
          migration: counted.migration,
          disconnected,
          queuesPaused: queues?.paused ?? [],
          warnings,
          durations: { verifyMs, restoreMs, checkMs, swapMs, totalMs: Date.now() - started },
        };
      } catch (error) {
        // Whatever happened, the target is untouched; the half-built database goes.
        await dropDatabase(admin, building).catch(() => undefined);
        if (signal.aborted) {
          throw new CliError(
            ExitCode.failed,
            `${(signal.reason as InterruptedError).message}: ${target.name} was not changed`,
          );
        }
        throw error;
      } finally {
        // Also when pg_restore failed while the pause was still under way.
        queues ??= await pausing.catch(() => null);
        await queues?.resume();
      }
    } finally {
      await admin.end().catch(() => undefined);
      await archive?.dispose();
    }
  });
}

/**
 * Refuses (exit 2) a backup of another database than the target — another name or another
 * server — unless `--from-database` repeats the source's name, as a typed confirmation that the
 * user knows whose backup goes where. Returns the source.
 */
async function checkSource(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  target: DatabaseIdentity,
  fromDatabase: string | undefined,
): Promise<DatabaseIdentity> {
  let key: Awaited<ReturnType<typeof backupKeyOf>> | undefined;
  const getKey = async () => (key ??= await backupKeyOf(ctx, dir, 'this backup'));
  const manifest = await readManifest(manifestPathOf(dumpPath), getKey).catch(async (error: unknown) => {
    await recordVerificationFailure(dumpPath, error);
    throw error;
  });
  const { name, host, port, oid, systemIdentifier } = manifest.database;
  const source: DatabaseIdentity = {
    name,
    host,
    port,
    ...(oid !== undefined ? { oid } : {}),
    ...(systemIdentifier ? { systemIdentifier } : {}),
  };
  const file = path.basename(dumpPath);
  if (fromDatabase !== undefined && fromDatabase !== source.name) {
    throw usageError(
      `--from-database ${fromDatabase} does not match ${file}: it is a backup of ${describeIdentity(source)}; nothing was restored`,
      `repeat the source's name exactly (--from-database ${source.name}), or pick another backup`,
    );
  }
  if (sameDatabase(source, target) || fromDatabase === source.name) {
    if (!sameDatabase(source, target)) {
      ctx.out.warn(
        `restoring a backup of ${describeIdentity(source, true)} into ${describeIdentity(target, true)}, as --from-database confirms`,
      );
    }
    return source;
  }
  const why =
    source.name !== target.name
      ? 'another database'
      : 'the same name on another server (its system identifier differs)';
  throw usageError(
    `${file} is a backup of ${describeIdentity(source, true)}, not of the target ${describeIdentity(target, true)} (${why}); refusing to restore it over ${target.name}`,
    `if that is what you mean, name the source to confirm: --from-database ${source.name}`,
  );
}

function describeContents(manifest: BackupManifest): string {
  const parts = [];
  if (manifest.tables) {
    parts.push(
      `${Object.keys(manifest.tables).length} tables, ${Object.values(manifest.tables).reduce((a, b) => a + b, 0)} rows`,
    );
  }
  parts.push(manifest.migration ? `migration ${formatVersion(manifest.migration.version)}` : 'no migrations');
  return parts.join(', ');
}

function refuseSessions(sessions: SessionInfo[], target: Target, options: RestoreOptions): void {
  if (sessions.length === 0 || options.forceDisconnect) return;
  throw new CliError(
    ExitCode.failed,
    `database ${target.name} on ${target.host}:${target.port} has ${sessions.length} other session(s): ${summarizeSessions(sessions)}`,
    'stop the application first, or pass --force-disconnect to terminate them at the swap',
  );
}

/**
 * The queues belong to the application of DATABASE_URL: they are paused when that database is
 * replaced, not when a backup goes into another one (a staging copy).
 */
async function pauseQueuesFor(ctx: CommandContext, options: RestoreOptions): Promise<PausedQueues | null> {
  if (options.pauseQueues === false || !replacesApplicationDatabase(ctx, options)) return null;
  const { pauseQueues } = await import('../lib/queue-pause.js');
  // REDIS_URL has a default; only a Redis the operator named explicitly must answer.
  const required = Boolean(ctx.env.REDIS_URL?.trim());
  const queues = await pauseQueues(ctx.config.REDIS_URL, ctx.config.QUEUE_PREFIX, { required });
  if (queues?.paused.length) ctx.out.info(`paused queues ${queues.paused.join(', ')} until the restore ends`);
  return queues;
}

function replacesApplicationDatabase(ctx: CommandContext, options: RestoreOptions): boolean {
  if (!options.targetDatabaseUrl) return true;
  if (!ctx.databaseUrl) return false;
  const target = describePostgresUrl(options.targetDatabaseUrl);
  const application = describePostgresUrl(ctx.databaseUrl);
  return (
    target.host === application.host && target.port === application.port && target.database === application.database
  );
}

export async function runPgRestore(
  ctx: CommandContext,
  file: string,
  options: { url: string; database: string; jobs: number; noAcl?: boolean; signal: AbortSignal },
): Promise<void> {
  const args = [
    '--exit-on-error',
    '--no-owner',
    `--jobs=${options.jobs}`,
    `--dbname=${options.database}`,
    '--no-password',
  ];
  if (options.noAcl) args.push('--no-acl');
  args.push(file);
  const progress = startProgress(ctx.out, 'restoring', () => `with ${options.jobs} job(s)`);
  try {
    await startPgTool('pg_restore', args, {
      ...toolsOf(ctx),
      url: options.url,
      database: options.database,
      cancelSignal: options.signal,
    });
  } catch (error) {
    throw toolFailure('pg_restore', error);
  } finally {
    progress.stop();
  }
}

/** Counts every table of the restored database (several connections at once) against the manifest. */
async function checkRestored(
  url: string,
  manifest: BackupManifest,
  jobs: number,
  analyze: boolean,
  signal: AbortSignal,
): Promise<{ tables: number | null; rows: number | null; migration: number | null }> {
  const first = await connectClient(url, { applicationName: 'lmsctl restore check' });
  try {
    const migration = await newestMigration(first);
    if ((migration?.version ?? null) !== (manifest.migration?.version ?? null)) {
      throw new VerificationError(
        `restored database is at migration ${migration ? formatVersion(migration.version) : 'none'}, the manifest says ${manifest.migration ? formatVersion(manifest.migration.version) : 'none'}`,
      );
    }
    if (!manifest.tables) {
      if (analyze) await first.query('ANALYZE');
      return { tables: null, rows: null, migration: migration?.version ?? null };
    }
    const present = await listTables(first);
    const expected = Object.keys(manifest.tables);
    const presentKeys = new Set(present.map((table) => table.key));
    const missing = expected.filter((key) => !presentKeys.has(key));
    const extra = [...presentKeys].filter((key) => !(key in manifest.tables!));
    if (missing.length || extra.length) {
      throw new VerificationError(
        [
          missing.length ? `missing tables: ${missing.join(', ')}` : '',
          extra.length ? `tables not in the manifest: ${extra.join(', ')}` : '',
        ]
          .filter(Boolean)
          .join('; '),
      );
    }
    const counts = await countInParallel(url, first, present, { jobs, signal, analyze, expected: manifest.tables });
    const mismatches = expected.filter((key) => counts[key] !== manifest.tables![key]);
    if (mismatches.length) {
      throw new VerificationError(
        `restored row counts differ from the manifest: ${mismatches
          .slice(0, 5)
          .map((key) => `${key} has ${counts[key]} rows, expected ${manifest.tables![key]}`)
          .join('; ')}${mismatches.length > 5 ? `; and ${mismatches.length - 5} more` : ''}`,
      );
    }
    return {
      tables: expected.length,
      rows: Object.values(counts).reduce((sum, count) => sum + count, 0),
      migration: migration?.version ?? null,
    };
  } finally {
    await first.end().catch(() => undefined);
  }
}

/**
 * Counts every table over up to `jobs` connections (the first one is reused), biggest tables
 * first so the lanes finish together; with `analyze`, each lane also ANALYZEs what it counted
 * (and partitioned parents at the end), so statistics exist before the database goes live.
 */
export async function countInParallel(
  url: string,
  first: pg.Client,
  tables: TableRef[],
  options: { jobs: number; signal: AbortSignal; analyze: boolean; expected?: Record<string, number> },
): Promise<Record<string, number>> {
  const lanes = Math.max(1, Math.min(options.jobs, tables.length));
  const clients = [first];
  try {
    for (let index = 1; index < lanes; index++) {
      clients.push(await connectClient(url, { applicationName: 'lmsctl restore check' }));
    }
    const queue = [...tables].sort((a, b) => (options.expected?.[b.key] ?? 0) - (options.expected?.[a.key] ?? 0));
    const counts: Record<string, number> = {};
    await Promise.all(
      clients.map(async (client) => {
        for (let table = queue.shift(); table !== undefined; table = queue.shift()) {
          if (options.signal.aborted) return;
          Object.assign(counts, await countRows(client, [table]));
          if (options.analyze) await client.query(`ANALYZE ${table.ident}`);
        }
      }),
    );
    if (options.analyze) {
      const parents = await first.query<{ ident: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS ident FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'`,
      );
      for (const { ident } of parents.rows) await first.query(`ANALYZE ${ident}`);
    }
    return counts;
  } finally {
    await Promise.all(clients.slice(1).map((client) => client.end().catch(() => undefined)));
  }
}

/**
 * The only moment the target changes: both renames commit in one transaction. Sessions that
 * appeared since the start are refused again, or terminated with --force-disconnect (and the
 * swap retried, since an application may reconnect in between).
 */
async function swapIn(
  admin: pg.Client,
  options: {
    target: Target;
    building: string;
    previous: string | null;
    existing: DatabaseFacts | null;
    forceDisconnect: boolean;
    manifest: BackupManifest;
  },
): Promise<number> {
  const { target, building, previous } = options;
  let disconnected = 0;
  for (let attempt = 1; ; attempt++) {
    if (previous) {
      const sessions = await sessionsOn(admin, target.name);
      if (sessions.length) {
        refuseSessions(sessions, target, { forceDisconnect: options.forceDisconnect });
        disconnected += await terminateSessions(admin, target.name);
      }
    }
    try {
      await admin.query('BEGIN');
      if (previous) {
        await admin.query(
          `ALTER DATABASE ${admin.escapeIdentifier(target.name)} RENAME TO ${admin.escapeIdentifier(previous)}`,
        );
        await setComment(
          admin,
          previous,
          JSON.stringify(markerFor('pre-restore', { target: target.name, backup: options.manifest.file })),
        );
      }
      await admin.query(
        `ALTER DATABASE ${admin.escapeIdentifier(building)} RENAME TO ${admin.escapeIdentifier(target.name)}`,
      );
      await setComment(admin, target.name, options.existing?.comment ?? null);
      await admin.query('COMMIT');
      return disconnected;
    } catch (error) {
      await admin.query('ROLLBACK').catch(() => undefined);
      // 55006: "database is being accessed by other users" — someone reconnected in between.
      if ((error as { code?: string }).code === '55006' && options.forceDisconnect && attempt < 5) continue;
      if ((error as { code?: string }).code === '55006') {
        throw new CliError(
          ExitCode.failed,
          `database ${target.name} gained sessions during the restore; nothing was changed`,
          'stop the application, or pass --force-disconnect',
        );
      }
      throw error;
    }
  }
}

function buildPlan(
  archive: PreparedArchive,
  target: Target,
  existing: DatabaseFacts | null,
  sessions: SessionInfo[],
  server: { version: string; major: number },
  pgRestoreMajor: number,
  disk: { freeBytes: number | null; where: string | null },
  options: RestoreOptions,
): RestorePlan {
  const { manifest } = archive;
  const rows = manifest.tables ? Object.values(manifest.tables).reduce((a, b) => a + b, 0) : null;
  const steps = [
    `verify ${manifest.file}: manifest signature, sha256, ${manifest.encryption ? 'decryption, ' : ''}archive listing (done)`,
    `create database ${derivedDatabaseName(target.name, `_restoring_${timestampSuffix()}`)} beside ${target.name}`,
    `pg_restore --exit-on-error --no-owner --jobs ${options.jobs ?? Math.min(4, os.availableParallelism())} into it`,
    manifest.tables
      ? `check ${Object.keys(manifest.tables).length} tables' row counts and the migration version`
      : 'check the migration version (the backup has no row counts)',
    existing
      ? `rename ${target.name} → ${target.name}_pre_restore_<time> and the restored database → ${target.name}, in one transaction`
      : `rename the restored database → ${target.name}`,
  ];
  if (sessions.length)
    steps.splice(
      4,
      0,
      options.forceDisconnect
        ? `terminate ${sessions.length} session(s)`
        : `refuse: ${sessions.length} session(s) connected (needs --force-disconnect)`,
    );
  if (existing)
    steps.push(
      options.dropPrevious ? 'drop the previous database' : 'keep the previous database until `lmsctl restore cleanup`',
    );
  return {
    plan: true,
    backup: {
      file: archive.dumpPath,
      takenAt: manifest.finishedAt,
      sizeBytes: manifest.sizeBytes,
      encrypted: Boolean(manifest.encryption),
      database: manifest.database.name,
      serverVersion: manifest.server.version,
      pgDumpVersion: manifest.pgDump.version,
      migration: manifest.migration?.version ?? null,
      tables: manifest.tables ? Object.keys(manifest.tables).length : null,
      rows,
    },
    archive: { entries: archive.listing.entries, byType: archive.listing.byType },
    target: {
      database: target.name,
      host: target.host,
      port: target.port,
      exists: Boolean(existing),
      sizeBytes: existing?.sizeBytes ?? null,
      owner: existing?.owner ?? null,
      serverVersion: server.version,
    },
    sessions: sessions.map((session) => ({
      applicationName: session.applicationName,
      user: session.user,
      pid: session.pid,
    })),
    disk: { neededBytes: manifest.database.sizeBytes, freeBytes: disk.freeBytes, where: disk.where },
    compatibility: compatibilityNotes(manifest, server.major, pgRestoreMajor),
    steps,
  };
}

export function renderRestore(result: RestoreResult | RestorePlan, style: ChalkInstance): string {
  if (result.plan) return renderPlan(result, style);
  const lines = [
    `${style.green('restored')} ${path.basename(result.backup)} into ${result.target.database} on ${result.target.host}:${result.target.port}`,
    `  ${result.tables === null ? 'row counts not checked (backup made with --no-counts)' : `${result.tables} tables, ${result.rows} rows checked against the manifest`}; migration ${result.migration === null ? 'none' : formatVersion(result.migration)}`,
    `  verify ${formatDuration(result.durations.verifyMs)}, restore ${formatDuration(result.durations.restoreMs)}, check ${formatDuration(result.durations.checkMs)}, swap ${formatDuration(result.durations.swapMs)}; total ${formatDuration(result.durations.totalMs)}`,
  ];
  if (result.disconnected) lines.push(`  disconnected ${result.disconnected} session(s)`);
  if (result.previous)
    lines.push(`  the previous database is kept as ${result.previous}; drop it with \`lmsctl restore cleanup\``);
  if (result.previousDropped) lines.push('  the previous database was dropped');
  for (const warning of result.warnings) lines.push(`  ${style.yellow('warning:')} ${warning}`);
  return lines.join('\n');
}

function renderPlan(plan: RestorePlan, style: ChalkInstance): string {
  const b = plan.backup;
  const t = plan.target;
  const types = Object.entries(plan.archive.byType)
    .sort(([, a], [, c]) => c - a)
    .map(([type, count]) => `${count} ${type}`)
    .join(', ');
  const disk =
    plan.disk.freeBytes === null
      ? `needs about ${formatBytes(plan.disk.neededBytes)} (free space on the server unknown)`
      : `needs about ${formatBytes(plan.disk.neededBytes)}, ${formatBytes(plan.disk.freeBytes)} free in ${plan.disk.where}` +
        (plan.disk.freeBytes < plan.disk.neededBytes * 1.2 ? style.red(' — not enough room') : '');
  return [
    style.bold('restore plan (nothing was changed)'),
    `backup   ${b.file}`,
    `         taken ${b.takenAt} from ${b.database} (PostgreSQL ${b.serverVersion}, pg_dump ${b.pgDumpVersion}), ${formatBytes(b.sizeBytes)}${b.encrypted ? ', encrypted' : ''}`,
    `         ${b.tables === null ? 'no row counts' : `${b.tables} tables, ${b.rows} rows`}, migration ${b.migration === null ? 'none' : formatVersion(b.migration)}`,
    `archive  ${plan.archive.entries} entries: ${types}`,
    `target   ${t.database} on ${t.host}:${t.port} (PostgreSQL ${t.serverVersion}) — ${t.exists ? `exists, ${formatBytes(t.sizeBytes ?? 0)}, owner ${t.owner}` : 'does not exist yet'}`,
    `sessions ${plan.sessions.length === 0 ? 'none' : plan.sessions.map((s) => `${s.applicationName || 'unnamed'} (${s.user}, pid ${s.pid})`).join(', ')}`,
    `disk     ${disk}`,
    ...plan.compatibility.map((note, index) => `${index === 0 ? 'versions ' : '         '}${note}`),
    '',
    ...plan.steps.map((step, index) => `${index + 1}. ${step}`),
  ].join('\n');
}

export interface RestoreCleanupResult {
  /** Whose leftovers were looked for: a database name, or every database's with --all. */
  scope: string;
  dropped: Array<{ database: string; kind: string; sizeBytes: number }>;
  /** Leftovers of other databases, left alone without --all. */
  leftAlone: string[];
}

/** Whether a kept or abandoned database is a leftover of restoring (or drilling) `database`. */
function isLeftoverOf(db: MarkedDatabase, database: string): boolean {
  if (db.marker.target !== undefined) return db.marker.target === database;
  // Markers written before they named their target: go by the name restore gives them.
  return db.name.startsWith(`${database}_restoring_`) || db.name.startsWith(`${database}_pre_restore_`);
}

/**
 * Drops what restores of the addressed database left: the copies they kept
 * (`<name>_pre_restore_…`) and abandoned half-built ones (`<name>_restoring_…`, drill scratch
 * databases of its backups). Other databases' leftovers only with `all`, listed first.
 */
export async function restoreCleanup(
  ctx: CommandContext,
  options: { targetDatabaseUrl?: string; all?: boolean } = {},
): Promise<RestoreCleanupResult> {
  const url = options.targetDatabaseUrl ?? requireDatabaseUrl(ctx);
  const { host, port, database } = describePostgresUrl(url);
  const scope = options.all ? 'every database' : database;
  const admin = await connectClient(withDatabase(url, 'postgres'), { applicationName: 'lmsctl restore cleanup' });
  try {
    const leftovers = (await markedDatabases(admin)).filter(
      (db) => db.marker.lmsctl === 'pre-restore' || isAbandoned(db),
    );
    const candidates = leftovers.filter((db) => options.all || isLeftoverOf(db, database));
    const leftAlone = leftovers.filter((db) => !candidates.includes(db)).map((db) => db.name);
    if (leftAlone.length) {
      ctx.out.info(
        `leaving ${leftAlone.length} leftover(s) of other databases alone: ${leftAlone.join(', ')} (--all cleans them too)`,
      );
    }
    if (candidates.length === 0) return { scope, dropped: [], leftAlone };
    ctx.out.info(
      `this drops ${candidates.length} database(s) on ${host}:${port} and all their data:\n` +
        candidates
          .map(
            (db) =>
              `  ${db.name} (${formatBytes(db.sizeBytes)}, ${db.marker.lmsctl === 'pre-restore' ? `kept by the restore of ${db.marker.target} at ${db.marker.at}` : 'left by an interrupted run'})`,
          )
          .join('\n'),
    );
    await confirmOrRefuse(`Drop ${candidates.length} database(s)?`, {
      yes: ctx.yes,
      action: `drop ${candidates.length} database(s)`,
    });
    for (const db of candidates) await dropDatabase(admin, db.name);
    return {
      scope,
      leftAlone,
      dropped: candidates.map((db) => ({ database: db.name, kind: db.marker.lmsctl, sizeBytes: db.sizeBytes })),
    };
  } finally {
    await admin.end().catch(() => undefined);
  }
}

export function renderRestoreCleanup(result: RestoreCleanupResult, style: ChalkInstance): string {
  if (result.dropped.length === 0) return `nothing to clean up for ${result.scope}`;
  return table(
    ['DROPPED', 'KIND', 'SIZE'],
    result.dropped.map((entry) => [entry.database, entry.kind, formatBytes(entry.sizeBytes)]),
    style,
  );
}
