import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import { connectClient, describePostgresUrl, errorMessage, formatVersion, withDatabase } from '@lms/core/essentials';
import { requireSessionDatabase, type CommandContext } from '../../context.js';
import { CliError, ExitCode, usageError } from '../../errors.js';
import { resolveBackup } from '../../backup/inventory.js';
import {
  describeIdentity,
  looksLikeProduction,
  sameDatabase,
  sameServer,
  systemIdentifierOf,
  type DatabaseIdentity,
} from '../../backup/identity.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { formatDuration } from '@lms/core/duration';
import { type InterruptedError, withInterrupt } from '../../lib/interrupt.js';
import { manifestPathOf, readManifest } from '../../backup/archive/manifest.js';
import {
  copyDatabaseProperties,
  createDatabase,
  databaseFacts,
  derivedDatabaseName,
  dropDatabase,
  dropAbandonedDatabases,
  markerFor,
  sessionsOn,
  setComment,
  summarizeSessions,
} from '../../postgres/admin.js';
import { lockDatabaseOrRefuse } from '../../postgres/database-lock.js';
import { refuseThroughPooler } from '../../postgres/direct-connection.js';
import { pgToolVersion } from '../../postgres/tools.js';
import { formatBytes } from '../../lib/progress.js';
import type { PausedQueues } from '../../queues/pause.js';
import { backupDirOf, backupKeyOf, toolsOf } from '../../backup/context.js';
import { prepareArchive, recordVerificationFailure, type PreparedArchive } from '../../backup/archive/verify.js';
import {
  checkRestored,
  describeContents,
  refuseSessions,
  runPgRestore,
  swapIn,
  type RestoreTarget,
} from '../../backup/restore-engine.js';
import { buildPlan, freeDiskOf, renderPlan, serverFacts, type RestorePlan } from '../../backup/restore-plan.js';
import { isBundle, unpackBundle, type UnpackedBundle } from '../../backup/bundle-source.js';
import { databaseStamp, defaultJobs } from '../../backup/stamp.js';

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
  /** False (`--no-acl`): skip GRANT/REVOKE, for a server without the source's roles. */
  acl?: boolean;
}

/** Advisory lock namespace ("lmsr") that keeps two restores of one database apart. */
const RESTORE_LOCK_CLASS = 0x6c6d7372;

async function targetOf(ctx: CommandContext, options: RestoreOptions): Promise<RestoreTarget> {
  const { url, source } = options.targetDatabaseUrl
    ? { url: options.targetDatabaseUrl, source: '--target-database-url' as const }
    : requireSessionDatabase(ctx);
  const { database, host, port } = describePostgresUrl(url);
  if (!database) throw usageError('the target URL names no database');
  if (['postgres', 'template0', 'template1'].includes(database)) {
    throw usageError(
      `refusing to restore over the system database "${database}"`,
      'name the application database in the URL',
    );
  }
  // pg_restore's session settings, the advisory locks and the swap need a session of their own.
  await refuseThroughPooler(url, source, 'restore');
  return { url, name: database, host, port };
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
  const tools = toolsOf(ctx);
  // Asked while the pooler check connects: on Debian `pg_restore` is a Perl wrapper that takes
  // about 0.07 s to start. Awaited where it was before, so a missing tool is reported as then.
  const version = pgToolVersion('pg_restore', tools);
  version.catch(() => undefined);
  const target = await targetOf(ctx, options);
  const jobs = options.jobs ?? defaultJobs();
  const started = Date.now();

  return withInterrupt(async (signal) => {
    const pgRestore = await version;
    const admin = await connectClient(withDatabase(target.url, 'postgres'), { applicationName: 'lmsctl restore' });
    let archive: PreparedArchive | undefined;
    let bundle: UnpackedBundle | undefined;
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
      // A typo in the target's name must not "succeed" by restoring into a new database.
      if (!existing && !options.create && !options.plan) {
        throw usageError(
          `database ${target.name} does not exist on ${target.host}:${target.port}; nothing was restored`,
          'check the name in the URL, or pass --create to restore into a new database of that name',
        );
      }
      // An off-site bundle as it is: its backup unpacked into LMS_WORK_DIR, then as any other.
      if (isBundle(spec)) {
        bundle = await unpackBundle(ctx, await resolveBackup(dir, spec, ctx.cwd, { kind: 'all' }), dir, signal);
      }
      const dumpPath = await resolveBackup(
        dir,
        bundle?.dumpPath ?? spec,
        ctx.cwd,
        options.fromDatabase ? { kind: 'name', name: options.fromDatabase } : { kind: 'database', database: addressed },
        { requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED },
      );
      // Whose backup this is decides before anything else is read or decrypted; the manifest's
      // signature is checked here, so an edited source name cannot slip past.
      const source = await checkSource(ctx, dumpPath, dir, addressed, options.fromDatabase);
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
      // Shared with backups; keeps `lmsctl db maintain` of the target away until the swap is done.
      await lockDatabaseOrRefuse(admin, target, 'shared', 'restore');
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

      await dropAbandonedDatabases(admin, target.name, (line) => ctx.out.info(line));
      const warnings: string[] = [];
      const stamp = databaseStamp();
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
            noAcl: options.acl === false,
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
              `the previous database ${previous} could not be dropped (${errorMessage(error)}): drop it with \`lmsctl restore cleanup\``,
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
      await bundle?.dispose();
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
  const manifest = await readManifest(manifestPathOf(dumpPath), getKey, {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  }).catch(async (error: unknown) => {
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
  // The system identifiers are worth showing only when the server is what differs.
  const otherServer = !sameServer(source, target);
  if (sameDatabase(source, target) || fromDatabase === source.name) {
    if (!sameDatabase(source, target)) {
      ctx.out.warn(
        `restoring a backup of ${describeIdentity(source, otherServer)} into ${describeIdentity(target, otherServer)}, as --from-database confirms`,
      );
    }
    return source;
  }
  const why =
    source.name !== target.name
      ? otherServer
        ? 'another database on another server'
        : 'another database'
      : 'the same name on another server (its system identifier differs)';
  throw usageError(
    `${file} is a backup of ${describeIdentity(source, otherServer)}, not of the target ${describeIdentity(target, otherServer)} (${why}); refusing to restore it over ${target.name}`,
    `if that is what you mean, name the source to confirm: --from-database ${source.name}`,
  );
}

/**
 * The queues belong to the application of DATABASE_URL: they are paused when that database is
 * replaced, not when a backup goes into another one (a staging copy).
 */
async function pauseQueuesFor(ctx: CommandContext, options: RestoreOptions): Promise<PausedQueues | null> {
  if (options.pauseQueues === false || !replacesApplicationDatabase(ctx, options)) return null;
  const { pauseQueues } = await import('../../queues/pause.js');
  // REDIS_URL has a default; only a Redis the operator named explicitly must answer.
  const required = ctx.configGiven.has('REDIS_URL');
  const queues = await pauseQueues(ctx.config.REDIS_URL, ctx.config.QUEUE_PREFIX, { required });
  if (queues?.paused.length) ctx.out.info(`paused queues ${queues.paused.join(', ')} until the restore ends`);
  return queues;
}

function replacesApplicationDatabase(ctx: CommandContext, options: RestoreOptions): boolean {
  if (!options.targetDatabaseUrl) return true;
  if (!ctx.sessionDatabase) return false;
  const target = describePostgresUrl(options.targetDatabaseUrl);
  const application = describePostgresUrl(ctx.sessionDatabase.url);
  return (
    target.host === application.host && target.port === application.port && target.database === application.database
  );
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
