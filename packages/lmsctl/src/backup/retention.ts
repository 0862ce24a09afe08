import { rm, unlink } from 'node:fs/promises';
import type { CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import {
  describeBackups,
  offlineSelector,
  selectBackups,
  soleDatabaseSelector,
  type BackupInfo,
  type SelectionFlags,
} from './inventory.js';
import { describeIdentity, describeSelector, sameDatabase } from './identity.js';
import { verificationPathOf } from './archive/store.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { manifestPathOf } from './archive/manifest.js';
import { formatBytes } from '../lib/progress.js';
import { backupDirOf, drillDirOf } from './context.js';

export interface BackupPruneOptions extends SelectionFlags {
  dir?: string;
  keep: number;
  keepDays?: number;
  dryRun?: boolean;
}

export interface BackupPruneResult {
  dir: string;
  /** Whose backups retention applied to. */
  showing: string;
  dryRun: boolean;
  kept: Array<{ file: string; database: string | null; reason: string }>;
  /** Dumps without a manifest: lmsctl neither made nor adopted them, so it never deletes them. */
  leftAlone: string[];
  deleted: Array<{ file: string; database: string | null; sizeBytes: number }>;
  freedBytes: number;
}

/** The backups of each source database, newest first within each. */
function groupBySource(backups: BackupInfo[]): BackupInfo[][] {
  const groups: BackupInfo[][] = [];
  for (const info of backups) {
    const group = groups.find((candidate) => {
      const first = candidate[0]!.database;
      return info.database && first ? sameDatabase(info.database, first) : info.database === first;
    });
    if (group) group.push(info);
    else groups.push([info]);
  }
  return groups;
}

/**
 * Retention, for each source database on its own (one database's hourly backups must not push
 * another's out of the folder): keeps the `keep` newest complete backups and any younger than
 * `keepDays`, and never deletes the newest backup nor the newest one that passed a drill.
 * Applies to the addressed database's backups, `--database NAME`'s, or with `--all` every
 * database's. Dumps without a manifest are never deleted: lmsctl did not make them (or they
 * await `backup adopt`); they are named once as left alone. Asks before deleting.
 */
export async function backupPrune(ctx: CommandContext, options: BackupPruneOptions): Promise<BackupPruneResult> {
  if (!Number.isInteger(options.keep) || options.keep < 1) throw usageError('--keep must be at least 1');
  const dir = backupDirOf(ctx, options.dir);
  const everything = await describeBackups(dir, drillDirOf(ctx));
  const all = everything.filter((info) => info.complete);
  const selector = offlineSelector(ctx.sessionDatabase?.url, options) ?? soleDatabaseSelector(all, dir);
  const backups = selectBackups(all, selector);
  const leftAlone = everything.filter((info) => !info.complete).map((info) => info.file);
  const reasons = new Map<string, string>();
  const keepReason = (file: string, reason: string) => {
    if (!reasons.has(file)) reasons.set(file, reason);
  };
  for (const group of groupBySource(backups)) {
    if (group[0]) keepReason(group[0].file, 'newest backup');
    group
      .slice(0, options.keep)
      .forEach((info, index) => keepReason(info.file, `among the ${options.keep} newest (#${index + 1})`));
    const drilled = group.find((info) => info.lastDrill?.verdict === 'pass');
    if (drilled) keepReason(drilled.file, 'newest backup that passed a drill');
    if (options.keepDays !== undefined) {
      const limit = options.keepDays * 86_400_000;
      for (const info of group) if (info.ageMs < limit) keepReason(info.file, `younger than ${options.keepDays} days`);
    }
  }
  const sourceOf = (info: BackupInfo) => (info.database ? describeIdentity(info.database) : null);
  const doomed = backups.filter((info) => !reasons.has(info.file));
  const result: BackupPruneResult = {
    dir,
    showing: describeSelector(selector),
    dryRun: options.dryRun ?? false,
    leftAlone,
    kept: backups
      .filter((info) => reasons.has(info.file))
      .map((info) => ({ file: info.file, database: sourceOf(info), reason: reasons.get(info.file)! })),
    deleted: doomed.map((info) => ({ file: info.file, database: sourceOf(info), sizeBytes: info.sizeBytes })),
    freedBytes: doomed.reduce((sum, info) => sum + info.sizeBytes, 0),
  };
  if (doomed.length === 0 || options.dryRun) return result;

  ctx.out.info(
    `this deletes ${doomed.length} backup(s) of ${result.showing} from ${dir} (${formatBytes(result.freedBytes)}), with their manifests:\n` +
      doomed.map((info) => `  ${info.file} (${sourceOf(info) ?? 'no manifest'})`).join('\n'),
  );
  await confirmOrRefuse(`Delete ${doomed.length} backup(s)?`, {
    yes: ctx.yes,
    action: `delete ${doomed.length} backup(s)`,
  });
  for (const info of doomed) {
    // The manifest goes first: a dump without one is never taken for a usable backup.
    await unlink(manifestPathOf(info.path)).catch(() => undefined);
    await unlink(verificationPathOf(info.path)).catch(() => undefined);
    // A directory backup goes with its files; `force: false` still reports a backup already gone.
    await rm(info.path, { recursive: info.archive === 'directory' });
  }
  return result;
}
