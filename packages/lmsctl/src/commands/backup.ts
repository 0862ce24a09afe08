import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ChalkInstance } from 'chalk';
import type pg from 'pg';
import { connectClient, describePostgresUrl, formatVersion } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../context.js';
import { CliError, ExitCode, usageError, withPath } from '../errors.js';
import { checkArchive } from '../lib/archive-check.js';
import { ENCRYPTION_ALGORITHM, createEncryptStream, readBackupKey, type BackupKey } from '../lib/backup-crypto.js';
import { identityOfConnection, type DatabaseIdentity } from '../lib/backup-identity.js';
import { ensureBackupDir, publishDump, backupFileName, writeVerification } from '../lib/backup-store.js';
import { formatDuration } from '@lms/core/duration';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import { MANIFEST_FORMAT, manifestPathOf, signManifest, writeManifest, type BackupManifest } from '../lib/manifest.js';
import { partialPathOf, removeStalePartials } from '../lib/partial-files.js';
import {
  assertDumpCanReadServer,
  pgToolVersion,
  startPgTool,
  toolFailure,
  type PgToolsOptions,
} from '../lib/pg-tools.js';
import type { MetricSample } from '../lib/metrics-export.js';
import { describeTransfer, formatBytes, startProgress } from '../lib/progress.js';
import { lmsctlVersion } from '../version.js';

export interface BackupOptions {
  /** Backup folder (default LMS_BACKUP_DIR). */
  dir?: string;
  /** pg_dump --compress value: 0-9, or method[:level] where pg_dump supports it. */
  compress?: string;
  encrypt?: boolean;
  /** Count every table's rows inside the dump's snapshot (default true). */
  counts?: boolean;
  /** Aborts the backup; without it, SIGINT/SIGTERM do (see withInterrupt). */
  signal?: AbortSignal;
}

export interface BackupResult {
  file: string;
  manifest: string;
  sizeBytes: number;
  sha256: string;
  encrypted: boolean;
  database: DatabaseIdentity;
  tables: number | null;
  rows: number | null;
  migration: number | null;
  startedAt: string;
  durationMs: number;
}

/** Shared by the commands that touch backups: folder, key and client tools from the context. */
export function backupDirOf(ctx: CommandContext, dir?: string): string {
  return path.resolve(ctx.cwd, dir ?? ctx.config.LMS_BACKUP_DIR);
}

export function toolsOf(ctx: CommandContext): PgToolsOptions {
  return { binDir: ctx.config.LMS_PG_BIN_DIR, env: ctx.env, debug: (message) => ctx.out.debug(message) };
}

/** The backup key from LMS_BACKUP_KEY_FILE, or a usage error saying how to provide one. */
export async function backupKeyOf(ctx: CommandContext, backupDir: string, why: string): Promise<BackupKey> {
  const file = ctx.config.LMS_BACKUP_KEY_FILE;
  if (!file) {
    throw usageError(
      `${why} needs the backup key, and LMS_BACKUP_KEY_FILE is not set`,
      'point LMS_BACKUP_KEY_FILE at the key file (64 hex characters, e.g. from `openssl rand -hex 32`), kept outside the backup folder',
    );
  }
  return readBackupKey(path.resolve(ctx.cwd, file), { backupDir });
}

/**
 * Hands metrics to the textfile collector and/or Pushgateway when configured; problems are
 * warnings, never failures of the backup or drill itself.
 */
export async function publishMetrics(
  ctx: CommandContext,
  database: string,
  kind: 'backup' | 'drill',
  samples: MetricSample[],
): Promise<void> {
  const textfileDir = ctx.config.LMS_METRICS_TEXTFILE_DIR && path.resolve(ctx.cwd, ctx.config.LMS_METRICS_TEXTFILE_DIR);
  const pushgatewayUrl = ctx.config.PUSHGATEWAY_URL;
  if (!textfileDir && !pushgatewayUrl) return;
  const { exportMetrics } = await import('../lib/metrics-export.js');
  const warnings = await exportMetrics(
    { textfileDir, pushgatewayUrl },
    { file: `lms_${kind}.prom`, group: kind, database, samples },
  );
  for (const warning of warnings) ctx.out.warn(warning);
}

const COMPRESS_PATTERN = /^(?:[0-9]|none|gzip(?::[1-9])?|lz4(?::\d{1,2})?|zstd(?::\d{1,2})?)$/;

interface SnapshotFacts {
  snapshot: string;
  identity: DatabaseIdentity;
  serverVersion: string;
  serverVersionNum: number;
  databaseSizeBytes: number;
  migration: { version: number; name: string } | null;
  tables: TableRef[];
}

/** Lists every table pg_dump will dump: ordinary tables and partitions, not extension members. */
const TABLES_SQL = `
  SELECT n.nspname || '.' || c.relname AS key, format('%I.%I', n.nspname, c.relname) AS ident
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r'
     AND n.nspname <> 'information_schema'
     AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   ORDER BY n.nspname, c.relname`;

/** A table as manifests and drill reports name it (`schema.table`) and as SQL must quote it. */
export interface TableRef {
  key: string;
  ident: string;
}

export async function listTables(client: pg.Client): Promise<TableRef[]> {
  return (await client.query<TableRef>(TABLES_SQL)).rows;
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

/** The newest applied migration, or null for a database lmsctl never migrated. */
export async function newestMigration(client: pg.Client): Promise<{ version: number; name: string } | null> {
  const present = await client.query<{ present: boolean }>(
    `SELECT to_regclass('public.schema_migrations') IS NOT NULL AS present`,
  );
  if (!present.rows[0]?.present) return null;
  const { rows } = await client.query<{ version: number; name: string }>(
    'SELECT version, name FROM public.schema_migrations ORDER BY version DESC LIMIT 1',
  );
  return rows[0] ?? null;
}

/** Counts the rows of `tables` on one connection, in its current snapshot. */
export async function countRows(client: pg.Client, tables: TableRef[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) AS count FROM ${table.ident}`);
    counts[table.key] = Number(rows[0]!.count);
  }
  return counts;
}

/**
 * Dumps the database into the backup folder as a verified, optionally encrypted custom-format
 * archive with its signed manifest. The dump and the manifest's row counts come from one
 * exported snapshot; the file gets its final name only once complete and checked.
 */
export async function backup(ctx: CommandContext, options: BackupOptions = {}): Promise<BackupResult> {
  const url = requireDatabaseUrl(ctx);
  const dir = backupDirOf(ctx, options.dir);
  if (options.compress !== undefined && !COMPRESS_PATTERN.test(options.compress)) {
    throw usageError(`--compress ${options.compress}: expected 0-9 (gzip level) or none, gzip[:N], lz4[:N], zstd[:N]`);
  }
  const key = options.encrypt ? await backupKeyOf(ctx, dir, '--encrypt') : undefined;
  const tools = toolsOf(ctx);
  const pgDump = await pgToolVersion('pg_dump', tools);
  await ensureBackupDir(dir);
  for (const name of await removeStalePartials(dir)) ctx.out.debug(`removed ${name} left by an interrupted backup`);

  const where = describePostgresUrl(url);
  const startedAt = new Date();
  const temporary = partialPathOf(
    path.join(dir, `.${backupFileName(startedAt).replace(/\.dump$/, '')}.${randomBytes(4).toString('hex')}`),
  );
  const client = await connectClient(url, { applicationName: 'lmsctl backup' });

  return withInterrupt(async (signal) => {
    let published: string | null = null;
    try {
      const facts = await openSnapshot(client, url);
      assertDumpCanReadServer(pgDump, Math.floor(facts.serverVersionNum / 10000), facts.serverVersion);
      ctx.out.info(
        `backing up ${where.database} on ${where.host}:${where.port} (${formatBytes(facts.databaseSizeBytes)}, ${facts.tables.length} tables)${key ? ', encrypted' : ''}`,
      );

      // Created here, owner-only, so the dump is never readable by others, not even briefly.
      await (await open(temporary, 'wx', 0o600)).close();
      let bytesWritten = 0;
      const sizePoll = setInterval(() => {
        stat(temporary).then(
          (info) => (bytesWritten = info.size),
          () => undefined,
        );
      }, 500);
      sizePoll.unref();
      const progress = startProgress(ctx.out, 'dumping', (elapsed) => describeTransfer(bytesWritten, elapsed));
      try {
        const dumpArgs = ['--format=custom', `--snapshot=${facts.snapshot}`, '--no-password'];
        if (options.compress !== undefined) dumpArgs.push(`--compress=${options.compress}`);
        ctx.out.debug(`snapshot ${facts.snapshot} exported; starting pg_dump ${pgDump.version}`);
        const dumpStarted = Date.now();
        // A failed count stops pg_dump too, rather than leaving it to read the whole database.
        const countFailed = new AbortController();
        const cancelSignal = AbortSignal.any([signal, countFailed.signal]);
        const dumped = key
          ? dumpEncrypted(dumpArgs, temporary, key, { ...tools, url, cancelSignal })
          : dumpPlain(dumpArgs, temporary, { ...tools, url, cancelSignal });
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
        const check = await checkArchive(temporary, { ...tools, key, signal });
        ctx.out.debug(`checksum and archive listing in ${formatDuration(Date.now() - checkStarted)}`);
        if (check.listingError)
          throw new CliError(ExitCode.failed, `pg_dump wrote an unreadable archive: ${check.listingError}`);
        const finishedAt = new Date();
        published = await publishDump(temporary, dir, startedAt);
        const manifest: BackupManifest = signManifest(
          {
            format: MANIFEST_FORMAT,
            formatVersion: 1,
            file: path.basename(published),
            sha256: check.sha256,
            sizeBytes: check.sizeBytes,
            encryption: check.encryption && { algorithm: ENCRYPTION_ALGORITHM, ...check.encryption },
            compression: options.compress ?? null,
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
          key,
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
          { name: 'lms_backup_size_bytes', help: 'Size of the last successful backup file.', value: check.sizeBytes },
        ]);
        const rows = tables ? Object.values(tables).reduce((sum, count) => sum + count, 0) : null;
        return {
          file: published,
          manifest: manifestPathOf(published),
          sizeBytes: check.sizeBytes,
          sha256: check.sha256,
          encrypted: Boolean(key),
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
      if (published) await unlink(published).catch(() => undefined);
      if (signal.aborted) {
        throw new CliError(ExitCode.failed, `${(signal.reason as InterruptedError).message}: no backup was written`);
      }
      throw error;
    } finally {
      await unlink(temporary).catch(() => undefined);
      await client.end().catch(() => undefined);
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

export function renderBackup(result: BackupResult, style: ChalkInstance): string {
  const what = [
    formatBytes(result.sizeBytes),
    result.tables === null ? 'rows not counted' : `${result.tables} tables, ${result.rows} rows`,
    result.migration === null ? 'no migrations' : `migration ${formatVersion(result.migration)}`,
    formatDuration(result.durationMs),
  ];
  if (result.encrypted) what.push('encrypted');
  return `${style.green('backup written')} ${result.file}\n  ${what.join(', ')}\n  sha256 ${result.sha256}`;
}
