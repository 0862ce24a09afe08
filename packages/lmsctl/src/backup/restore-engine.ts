import type pg from 'pg';
import { connectClient, formatVersion, VerificationError } from '@lms/core/essentials';
import { type CommandContext } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { type BackupManifest } from './archive/manifest.js';
import {
  markerFor,
  sessionsOn,
  setComment,
  summarizeSessions,
  terminateSessions,
  type DatabaseFacts,
  type SessionInfo,
} from '../postgres/admin.js';
import { startPgTool, toolFailure } from '../postgres/tools.js';
import { startProgress } from '../lib/progress.js';
import { toolsOf } from './context.js';
import { compareWithManifest } from './manifest-check.js';

/**
 * The restore engine: pg_restore into a database beside the target, every table checked against
 * the manifest, then the swap — both renames in one transaction — so the target is either as it
 * was or fully restored. Used by `restore` and, for its restore step, by `drill`.
 */

export function describeContents(manifest: BackupManifest): string {
  const parts = [];
  if (manifest.tables) {
    parts.push(
      `${Object.keys(manifest.tables).length} tables, ${Object.values(manifest.tables).reduce((a, b) => a + b, 0)} rows`,
    );
  }
  parts.push(manifest.migration ? `migration ${formatVersion(manifest.migration.version)}` : 'no migrations');
  return parts.join(', ');
}

export function refuseSessions(
  sessions: SessionInfo[],
  target: RestoreTarget,
  options: { forceDisconnect?: boolean },
): void {
  if (sessions.length === 0 || options.forceDisconnect) return;
  throw new CliError(
    ExitCode.failed,
    `database ${target.name} on ${target.host}:${target.port} has ${sessions.length} other session(s): ${summarizeSessions(sessions)}`,
    'stop the application first, or pass --force-disconnect to terminate them at the swap',
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
export async function checkRestored(
  url: string,
  manifest: BackupManifest,
  jobs: number,
  analyze: boolean,
  signal: AbortSignal,
): Promise<{ tables: number | null; rows: number | null; migration: number | null }> {
  const first = await connectClient(url, { applicationName: 'lmsctl restore check' });
  try {
    const { migration, tables, rows } = await compareWithManifest(url, first, manifest, { jobs, signal, analyze });
    if (!migration.ok) {
      const version = (value: number | null) => (value === null ? 'none' : formatVersion(value));
      throw new VerificationError(
        `restored database is at migration ${version(migration.found)}, the manifest says ${version(migration.expected)}`,
      );
    }
    if (!tables || !rows) {
      if (analyze) await first.query('ANALYZE');
      return { tables: null, rows: null, migration: migration.found };
    }
    if (!tables.ok) {
      throw new VerificationError(
        [
          tables.missing.length ? `missing tables: ${tables.missing.join(', ')}` : '',
          tables.extra.length ? `tables not in the manifest: ${tables.extra.join(', ')}` : '',
        ]
          .filter(Boolean)
          .join('; '),
      );
    }
    const mismatches = rows.filter((row) => !row.ok);
    if (mismatches.length) {
      throw new VerificationError(
        `restored row counts differ from the manifest: ${mismatches
          .slice(0, 5)
          .map((row) => `${row.table} has ${row.found} rows, expected ${row.expected}`)
          .join('; ')}${mismatches.length > 5 ? `; and ${mismatches.length - 5} more` : ''}`,
      );
    }
    return {
      tables: rows.length,
      rows: rows.reduce((sum, row) => sum + (row.found ?? 0), 0),
      migration: migration.found,
    };
  } finally {
    await first.end().catch(() => undefined);
  }
}

/**
 * The only moment the target changes: both renames commit in one transaction. Sessions that
 * appeared since the start are refused again, or terminated with --force-disconnect (and the
 * swap retried, since an application may reconnect in between).
 */
export async function swapIn(
  admin: pg.Client,
  options: {
    target: RestoreTarget;
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

/** The database a restore replaces or creates. */
export interface RestoreTarget {
  url: string;
  name: string;
  host: string;
  port: number;
}
