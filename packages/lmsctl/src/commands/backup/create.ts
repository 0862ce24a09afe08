import type { ChalkInstance } from 'chalk';
import { formatVersion } from '@lms/core/essentials';
import { formatDuration } from '@lms/core/duration';
import type { BackupResult } from '../../backup/create.js';
import { formatBytes } from '../../lib/progress.js';

/** `lmsctl backup`: the work is the backup domain's (src/backup/create.ts); this is its terminal view. */
export { backup, type BackupOptions, type BackupResult } from '../../backup/create.js';

export function renderBackup(result: BackupResult, style: ChalkInstance): string {
  const what = [
    formatBytes(result.sizeBytes),
    result.tables === null ? 'rows not counted' : `${result.tables} tables, ${result.rows} rows`,
    result.migration === null ? 'no migrations' : `migration ${formatVersion(result.migration)}`,
    formatDuration(result.durationMs),
  ];
  if (result.archive === 'directory') what.push(`directory archive, ${result.jobs} jobs`);
  if (result.encrypted) what.push('encrypted');
  if (result.signed) what.push('manifest signed with the backup key');
  return `${style.green('backup written')} ${result.file}\n  ${what.join(', ')}\n  sha256 ${result.sha256}`;
}
