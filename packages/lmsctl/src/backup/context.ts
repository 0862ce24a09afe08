import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import type { PgToolsOptions } from '../postgres/tools.js';
import { readBackupKey, type BackupKey } from './archive/crypto.js';
import { removeStalePartials } from './archive/partial-files.js';
import type { MetricSample } from './metrics-export.js';

/** What every backup command takes from the context: folders, key, client tools, metrics targets. */

/** The backup folder: `--dir`, else LMS_BACKUP_DIR, relative to the working directory. */
export function backupDirOf(ctx: CommandContext, dir?: string): string {
  return path.resolve(ctx.cwd, dir ?? ctx.config.LMS_BACKUP_DIR);
}

/**
 * Where decrypted and unpacked working copies go (LMS_WORK_DIR, else the backup folder `dir`):
 * created owner-only, and swept of a killed run's leftovers.
 */
export async function workDirOf(ctx: CommandContext, dir: string): Promise<string> {
  const work = ctx.config.LMS_WORK_DIR ? path.resolve(ctx.cwd, ctx.config.LMS_WORK_DIR) : dir;
  await mkdir(work, { recursive: true, mode: 0o700 });
  await removeStalePartials(work);
  return work;
}

/** The drill reports' folder (LMS_DRILL_DIR). */
export function drillDirOf(ctx: CommandContext): string {
  return path.resolve(ctx.cwd, ctx.config.LMS_DRILL_DIR);
}

/** pg_dump/pg_restore from LMS_PG_BIN_DIR (else PATH), with --verbose notes. */
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
  const { exportMetrics } = await import('./metrics-export.js');
  const warnings = await exportMetrics(
    { textfileDir, pushgatewayUrl },
    { file: `lms_${kind}.prom`, group: kind, database, samples },
  );
  for (const warning of warnings) ctx.out.warn(warning);
}
