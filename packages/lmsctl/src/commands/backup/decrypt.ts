import type { ChalkInstance } from 'chalk';
import type { DecryptResult } from '../../backup/decrypt.js';
import { formatBytes } from '../../lib/progress.js';

/** `lmsctl backup decrypt`: the work is the backup domain's (src/backup/decrypt.ts); this is its terminal view. */
export { backupDecrypt, type DecryptOptions, type DecryptResult } from '../../backup/decrypt.js';

export function renderBackupDecrypt(result: DecryptResult, style: ChalkInstance): string {
  const checked = result.manifestChecked
    ? 'every chunk authenticated, the manifest signature and checksums matched'
    : 'every chunk authenticated (no manifest beside it to check against)';
  return `${style.green('decrypted')} ${result.backup} → ${result.out} (${formatBytes(result.sizeBytes)}): ${checked}; pg_restore reads it as it is`;
}
