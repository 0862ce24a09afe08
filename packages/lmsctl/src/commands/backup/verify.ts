import type { ChalkInstance } from 'chalk';
import type { CommandContext } from '../../context.js';
import { usageError } from '../../errors.js';
import { resolveBackup } from '../../backup/inventory.js';
import { backupDirOf } from '../../backup/context.js';
import { verifyBackupFile } from '../../backup/archive/verify.js';
import { latestSelector } from '../../backup/inventory.js';

export interface BackupVerifyResult {
  file: string;
  ok: true;
  sha256: string;
  sizeBytes: number;
  encrypted: boolean;
  entries: number;
  tables: number | null;
  /** pg_restore read every data block (--deep). */
  deep: boolean;
}

/**
 * Verifies a backup (either kind): manifest signature, every checksum, decryption, listing;
 * with `deep` also every data block through pg_restore. Exit 3 on any mismatch.
 */
export async function backupVerify(
  ctx: CommandContext,
  spec: string,
  options: { dir?: string; database?: string; deep?: boolean; jobs?: number } = {},
): Promise<BackupVerifyResult> {
  if (options.jobs !== undefined && !options.deep) {
    throw usageError('--jobs sets how many pg_restore processes read the data blocks: it goes with --deep');
  }
  const dir = backupDirOf(ctx, options.dir);
  const dumpPath = await resolveBackup(dir, spec, ctx.cwd, await latestSelector(ctx, dir, options), {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  });
  const verified = await verifyBackupFile(ctx, dumpPath, dir, { deep: options.deep, jobs: options.jobs });
  return {
    file: dumpPath,
    ok: true,
    deep: verified.deep,
    sha256: verified.manifest.sha256,
    sizeBytes: verified.manifest.sizeBytes,
    encrypted: Boolean(verified.manifest.encryption),
    entries: verified.entries,
    tables: verified.manifest.tables ? Object.keys(verified.manifest.tables).length : null,
  };
}

export function renderBackupVerify(result: BackupVerifyResult, style: ChalkInstance): string {
  return `${style.green(result.deep ? 'deep-verified' : 'verified')} ${result.file}: sha256 matches the manifest, ${result.entries} archive entries readable${result.encrypted ? ', every encrypted chunk authenticated' : ''}${result.deep ? ', every data block read by pg_restore' : ''}`;
}
