import type { ChalkInstance } from 'chalk';
import type { CommandContext } from '../../context.js';
import {
  describeBackups,
  describeSources,
  offlineSelector,
  selectBackups,
  type BackupInfo,
  type SelectionFlags,
} from '../../backup/inventory.js';
import { describeSelector } from '../../backup/identity.js';
import { formatDuration } from '@lms/core/duration';
import { formatBytes } from '../../lib/progress.js';
import { table } from '../../output.js';
import { backupDirOf, drillDirOf } from '../../backup/context.js';

export interface BackupListResult {
  dir: string;
  /** Whose backups are listed: `lms on 127.0.0.1:5432`, `database lms`, or `all databases`. */
  showing: string;
  backups: BackupInfo[];
  /**
   * Dumps in the folder without a manifest: not backups (made without lmsctl, or their manifest
   * lost) until `backup adopt` makes them so; shown whatever the selection, having no source.
   */
  notBackups: Array<{ file: string; path: string; sizeBytes: number }>;
  /** Backups in the folder that the selection left out (other databases'). */
  hidden: number;
  /** The databases those hidden backups came from, for the footer. */
  hiddenSources: string;
}

/**
 * The backups of the addressed database (DATABASE_URL), of `--database NAME`, or with `--all`
 * (also the default when no database is addressed) every one, newest first.
 */
export async function backupList(
  ctx: CommandContext,
  options: { dir?: string } & SelectionFlags = {},
): Promise<BackupListResult> {
  const dir = backupDirOf(ctx, options.dir);
  const selector = offlineSelector(ctx.sessionDatabase?.url, options) ?? { kind: 'all' as const };
  const everything = await describeBackups(dir, drillDirOf(ctx));
  // What `latest`, verify and restore take for a backup: a dump with its manifest.
  const all = everything.filter((info) => info.complete);
  const backups = selectBackups(all, selector);
  const hidden = all.filter((info) => !backups.includes(info));
  return {
    dir,
    showing: describeSelector(selector),
    backups,
    notBackups: everything
      .filter((info) => !info.complete)
      .map((info) => ({ file: info.file, path: info.path, sizeBytes: info.sizeBytes })),
    hidden: hidden.length,
    hiddenSources: describeSources(hidden),
  };
}

function verificationCell(info: BackupInfo, style: ChalkInstance): string {
  if (info.verification === 'verified') return style.green(info.deepVerifiedAt ? 'deep' : 'yes');
  if (info.verification === 'failed') return style.red('FAILED');
  return style.yellow('no');
}

export function renderBackupList(result: BackupListResult, style: ChalkInstance): string {
  const otherwise = result.hidden
    ? `\n${style.dim(`${result.hidden} more backup(s) of other databases${result.hiddenSources ? ` (${result.hiddenSources})` : ''}: --all lists them`)}`
    : '';
  const notBackups = result.notBackups.length
    ? `\n${style.yellow(`not lmsctl backups (no manifest): ${result.notBackups.map((entry) => entry.file).join(', ')}`)}\n` +
      style.dim('`lmsctl backup adopt FILE` (or --all) checks one deeply and makes it a backup')
    : '';
  if (result.backups.length === 0) return `no backups of ${result.showing} in ${result.dir}${otherwise}${notBackups}`;
  const rows = result.backups.map((info) => [
    info.adopted ? `${info.file} (adopted)` : info.file,
    formatBytes(info.sizeBytes),
    `${formatDuration(info.ageMs)} ago`,
    info.database ? `${info.database.name}@${info.database.host}:${info.database.port}` : '—',
    info.encrypted ? 'yes' : 'no',
    info.signed ? 'yes' : 'no',
    verificationCell(info, style),
    info.lastDrill
      ? (info.lastDrill.verdict === 'pass' ? style.green : style.red)(
          `${info.lastDrill.verdict} ${info.lastDrill.at.slice(0, 10)}`,
        )
      : '—',
  ]);
  const failures = result.backups
    .filter((info) => info.verification === 'failed')
    .map(
      (info) =>
        `${style.red('verification failed')} ${info.file} (${info.verifiedAt ?? 'unknown time'}): ${info.verificationDetail}`,
    );
  const count = `${result.backups.length} backup${result.backups.length === 1 ? '' : 's'} of ${result.showing} in ${result.dir}`;
  return [
    table(['BACKUP', 'SIZE', 'AGE', 'DATABASE', 'ENCRYPTED', 'SIGNED', 'VERIFIED', 'LAST DRILL'], rows, style),
    ...(failures.length ? ['', ...failures] : []),
    '',
    `${style.dim(count)}${otherwise}${notBackups}`,
  ].join('\n');
}
