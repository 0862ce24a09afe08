import type { ChalkInstance } from 'chalk';
import { formatVersion } from '@lms/core/essentials';
import type { AdoptResult } from '../../backup/adopt.js';
import { formatBytes } from '../../lib/progress.js';

/** `lmsctl backup adopt`: adoption is the backup domain's (src/backup/adopt.ts); this is its terminal view. */
export { backupAdopt, type AdoptOptions, type AdoptResult } from '../../backup/adopt.js';

export function renderBackupAdopt(result: AdoptResult, style: ChalkInstance): string {
  if (result.adopted.length === 0) return `no dumps without a manifest in ${result.dir}: nothing to adopt`;
  return result.adopted
    .map((entry) =>
      [
        `${style.green('adopted')} ${entry.file}${entry.copiedFrom ? ` (copied from ${entry.copiedFrom})` : ''}`,
        `  ${entry.database}, taken ${entry.takenAt}: ${entry.tables} tables, ${entry.rows} rows, ${entry.migration === null ? 'no migrations' : `migration ${formatVersion(entry.migration)}`}, ${formatBytes(entry.sizeBytes)}`,
      ].join('\n'),
    )
    .join('\n');
}
