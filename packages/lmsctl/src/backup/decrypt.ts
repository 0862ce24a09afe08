import { mkdir, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { VerificationError } from '@lms/core/essentials';
import type { CommandContext } from '../context.js';
import { usageError, withPath } from '../errors.js';
import { withInterrupt } from '../lib/interrupt.js';
import { assertMatchesManifest, decryptToFile } from './archive/check.js';
import { readEncryptionHeader } from './archive/crypto.js';
import { readFolderAgainst, removeFolder, storedFilesOf, TOC_FILE } from './archive/directory.js';
import { manifestPathOf, readManifest, type BackupManifest } from './archive/manifest.js';
import { partialPathOf } from './archive/partial-files.js';
import { backupDirOf, backupKeyOf } from './context.js';
import { latestSelector, resolveBackup } from './inventory.js';

/**
 * `backup decrypt`: the plain pg_dump archive of an encrypted backup, for stock pg_restore (a
 * DBA's tools, another machine). Written under a temporary name and renamed to `--out` only once
 * every chunk authenticated and, with the manifest beside the backup, every checksum matched.
 */

export interface DecryptOptions {
  out: string;
  dir?: string;
  database?: string;
  signal?: AbortSignal;
}

export interface DecryptResult {
  backup: string;
  out: string;
  archive: 'custom' | 'directory';
  /** The manifest's signature and checksums were checked too (false: no manifest beside it). */
  manifestChecked: boolean;
  sizeBytes: number;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

export async function backupDecrypt(
  ctx: CommandContext,
  spec: string,
  options: DecryptOptions,
): Promise<DecryptResult> {
  const dir = backupDirOf(ctx, options.dir);
  const dumpPath = await resolveBackup(dir, spec, ctx.cwd, await latestSelector(ctx, dir, options), {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  });
  const name = path.basename(dumpPath);
  const out = path.resolve(ctx.cwd, options.out);
  if (await exists(out)) throw usageError(`${out} already exists`, 'choose another --out path or remove it first');
  const folder = (await stat(dumpPath)).isDirectory();
  const header = await readEncryptionHeader(folder ? path.join(dumpPath, TOC_FILE) : dumpPath);
  if (!header) {
    throw usageError(`${name} is not encrypted`, 'pg_restore reads it as it is');
  }
  const key = await backupKeyOf(ctx, dir, 'decrypting');
  let manifest: BackupManifest | null = null;
  if (await exists(manifestPathOf(dumpPath))) {
    manifest = await readManifest(manifestPathOf(dumpPath), () => Promise.resolve(key), {
      requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
    });
    if (manifest.file !== name) throw new VerificationError(`manifest names ${manifest.file}, not ${name}`);
  }

  return withInterrupt(async (signal) => {
    const temporary = partialPathOf(out);
    try {
      if (folder && manifest) {
        await readFolderAgainst(dumpPath, manifest.files ?? [], manifest.sha256, { key, decryptTo: temporary, signal });
      } else if (folder) {
        // Without a manifest the files present are what there is; each one's chunks still authenticate.
        await mkdir(temporary, { mode: 0o700 });
        for (const file of await storedFilesOf(dumpPath)) {
          await decryptToFile(file.path, key, path.join(temporary, file.name), signal);
        }
      } else {
        const sha256 = await decryptToFile(dumpPath, key, temporary, signal);
        if (manifest) {
          assertMatchesManifest({ sizeBytes: (await stat(dumpPath)).size, sha256, listingError: null }, manifest, name);
        }
      }
      await rename(temporary, out);
    } catch (error) {
      await removeFolder(temporary);
      throw withPath(error, out);
    }
    const sizeBytes = folder
      ? (await storedFilesOf(out)).reduce((sum, file) => sum + file.sizeBytes, 0)
      : (await stat(out)).size;
    return {
      backup: dumpPath,
      out,
      archive: folder ? 'directory' : 'custom',
      manifestChecked: Boolean(manifest),
      sizeBytes,
    };
  }, options.signal);
}
