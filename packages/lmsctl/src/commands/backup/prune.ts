import type { ChalkInstance } from 'chalk';
import type { BackupPruneResult } from '../../backup/retention.js';
import { formatBytes } from '../../lib/progress.js';

/** `lmsctl backup prune`: retention is the backup domain's (src/backup/retention.ts); this is its terminal view. */
export { backupPrune, type BackupPruneOptions, type BackupPruneResult } from '../../backup/retention.js';

export function renderBackupPrune(result: BackupPruneResult, style: ChalkInstance): string {
  const lines = result.kept.map((entry) => `${style.green('keep  ')} ${entry.file} ${style.dim(`(${entry.reason})`)}`);
  if (result.leftAlone.length) {
    lines.push(`${style.yellow('not lmsctl backups (no manifest), left alone:')} ${result.leftAlone.join(', ')}`);
  }
  const verb = result.dryRun ? 'would delete' : 'deleted';
  lines.push(
    ...result.deleted.map(
      (entry) => `${style.red(verb.padEnd(6))} ${entry.file} ${style.dim(formatBytes(entry.sizeBytes))}`,
    ),
  );
  lines.push(
    result.deleted.length === 0
      ? 'nothing to delete'
      : `${verb} ${result.deleted.length} backup(s), ${formatBytes(result.freedBytes)}${result.dryRun ? ' (dry run: nothing was deleted)' : ''}`,
  );
  return lines.join('\n');
}
