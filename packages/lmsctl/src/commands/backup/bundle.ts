import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { TarArchive } from 'archiver';
import type { ChalkInstance } from 'chalk';
import { VerificationError } from '@lms/core/essentials';
import type { CommandContext } from '../../context.js';
import { usageError, withPath } from '../../errors.js';
import { readManifestUnchecked, resolveBackup } from '../../backup/inventory.js';
import { readVerification, verificationPathOf, type VerificationRecord } from '../../backup/archive/store.js';
import { readDrillReports } from '../../backup/drill-reports.js';
import { archiveKindOf, manifestPathOf, noManifestMessage } from '../../backup/archive/manifest.js';
import { storedFilesOf } from '../../backup/archive/directory.js';
import { partialPathOf } from '../../backup/archive/partial-files.js';
import { formatBytes } from '../../lib/progress.js';
import { backupDirOf, drillDirOf } from '../../backup/context.js';
import { latestSelector } from '../../backup/inventory.js';
import { isBundle } from '../../backup/bundle-source.js';

export interface BackupBundleResult {
  bundle: string;
  sizeBytes: number;
  files: string[];
}

/**
 * Packs a dump (a directory backup's folder with its files), its manifest, its verification and
 * its drill reports into one tar.gz.
 */
export async function backupBundle(
  ctx: CommandContext,
  spec: string,
  options: { dir?: string; out: string; database?: string },
): Promise<BackupBundleResult> {
  // `restore` and `drill` know a bundle by its name: one named otherwise would later be taken for
  // a dump without a manifest.
  if (!isBundle(options.out)) {
    throw usageError(
      `--out ${options.out}: a bundle's name ends in .tar.gz (or .tgz)`,
      `restore and drill recognise a bundle by that ending: e.g. --out ${options.out}.tar.gz`,
    );
  }
  const dir = backupDirOf(ctx, options.dir);
  const dumpPath = await resolveBackup(dir, spec, ctx.cwd, await latestSelector(ctx, dir, options), {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  });
  const manifest = await readManifestUnchecked(dumpPath);
  if (!manifest) throw new VerificationError(noManifestMessage(manifestPathOf(dumpPath)));
  const out = path.resolve(ctx.cwd, options.out);
  if (
    await stat(out).then(
      () => true,
      () => false,
    )
  ) {
    throw usageError(`${out} already exists`, 'choose another --out path or remove the file first');
  }
  const folder = archiveKindOf(manifest) === 'directory' ? path.basename(dumpPath) : null;
  // A directory backup goes in as its folder and every file in it.
  const members: Array<{ file: string; name: string }> = folder
    ? (await storedFilesOf(dumpPath)).map((file) => ({ file: file.path, name: `${folder}/${file.name}` }))
    : [{ file: dumpPath, name: path.basename(dumpPath) }];
  members.push({ file: manifestPathOf(dumpPath), name: path.basename(manifestPathOf(dumpPath)) });
  const verification: VerificationRecord | null = await readVerification(dumpPath);
  if (verification)
    members.push({ file: verificationPathOf(dumpPath), name: path.basename(verificationPathOf(dumpPath)) });
  for (const report of await readDrillReports(drillDirOf(ctx))) {
    if (report.backup.file !== manifest.file || report.backup.sha256 !== manifest.sha256) continue;
    members.push({ file: report.path, name: `drills/${path.basename(report.path)}` });
    const markdown = report.path.replace(/\.json$/, '.md');
    if (
      await stat(markdown).then(
        () => true,
        () => false,
      )
    )
      members.push({ file: markdown, name: `drills/${path.basename(markdown)}` });
  }
  const temporary = partialPathOf(out);
  const archive = new TarArchive({ gzip: true, gzipOptions: { level: 6 } });
  if (folder) archive.append(Buffer.alloc(0), { name: `${folder}/`, type: 'directory', mode: 0o700 });
  for (const member of members) archive.append(createReadStream(member.file), { name: member.name, mode: 0o600 });
  const written = pipeline(archive, createWriteStream(temporary, { mode: 0o600, flags: 'wx' }));
  try {
    // Together: a failed finalize must not leave the write's rejection unobserved.
    await Promise.all([archive.finalize(), written]);
    await rename(temporary, out);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    // A full disk fails the stream's write, which names no file.
    throw withPath(error, out);
  }
  return { bundle: out, sizeBytes: (await stat(out)).size, files: members.map((member) => member.name) };
}

export function renderBackupBundle(result: BackupBundleResult, style: ChalkInstance): string {
  return `${style.green('bundle written')} ${result.bundle} (${formatBytes(result.sizeBytes)}): ${result.files.join(', ')}`;
}
