import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { VerificationError } from '@lms/core/essentials';
import type { CommandContext } from '../context.js';
import { manifestPathOf } from './archive/manifest.js';
import { partialPathOf } from './archive/partial-files.js';
import { BACKUP_FILE_PATTERN } from './archive/store.js';
import { readTarGz } from './archive/tar-reader.js';
import { removeFolder } from './archive/directory.js';
import { workDirOf } from './context.js';

/**
 * `restore` and `drill` of an off-site bundle (`backup bundle`'s tar.gz) as it is: its members
 * are checked against what a bundle holds, the backup and its manifest are unpacked into an
 * owner-only folder of LMS_WORK_DIR, and the command goes on with that backup — verified like
 * any other, its manifest's signature and checksums first. The folder goes when it is done.
 */

/** A file name that names a bundle rather than a backup. */
export function isBundle(spec: string): boolean {
  return /\.(?:tar\.gz|tgz)$/i.test(spec);
}

export interface UnpackedBundle {
  /** The bundle itself. */
  bundle: string;
  /** The backup inside, unpacked. */
  dumpPath: string;
  dispose(): Promise<void>;
}

const FILE_IN_FOLDER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What a bundle member is: the backup (or a file of its folder), its manifest, or what a restore needs not. */
function classify(
  name: string,
): { kind: 'dump' | 'folder' | 'folder-file' | 'manifest' | 'skip'; dump: string } | null {
  const parts = name.replace(/\/$/, '').split('/');
  if (
    name.startsWith('/') ||
    name.includes('\\') ||
    parts.some((part) => part === '..' || part === '.' || part === '')
  ) {
    return null;
  }
  const [first = '', second] = parts;
  if (first === 'drills' && parts.length <= 2) return { kind: 'skip', dump: '' };
  if (
    parts.length === 2 &&
    first.endsWith('.dump.d') &&
    BACKUP_FILE_PATTERN.test(first) &&
    FILE_IN_FOLDER.test(second!)
  ) {
    return { kind: 'folder-file', dump: first };
  }
  if (parts.length !== 1) return null;
  if (BACKUP_FILE_PATTERN.test(first)) return { kind: first.endsWith('.d') ? 'folder' : 'dump', dump: first };
  const manifestOf = /^(.+)\.json$/.exec(first)?.[1];
  if (manifestOf?.endsWith('.verify')) {
    return BACKUP_FILE_PATTERN.test(manifestOf.slice(0, -'.verify'.length)) ? { kind: 'skip', dump: '' } : null;
  }
  if (manifestOf && BACKUP_FILE_PATTERN.test(manifestOf)) return { kind: 'manifest', dump: manifestOf };
  return null;
}

/**
 * Unpacks the backup and manifest of the bundle at `bundle` (VerificationError, exit 3, for a
 * member `backup bundle` never writes, a bundle without exactly one backup and its manifest, or
 * a damaged one); the verification record and drill reports inside are left out, the backup is
 * verified afresh.
 */
export async function unpackBundle(
  ctx: CommandContext,
  bundle: string,
  dir: string,
  signal?: AbortSignal,
): Promise<UnpackedBundle> {
  const work = await workDirOf(ctx, dir);
  const folder = partialPathOf(
    path.join(work, `.lms_bundle_${path.basename(bundle).replace(/[^A-Za-z0-9._-]/g, '_')}`),
  );
  const dispose = () => removeFolder(folder);
  await mkdir(folder, { mode: 0o700 });
  const shown = path.basename(bundle);
  try {
    const dumps = new Set<string>();
    const manifests = new Set<string>();
    await readTarGz(
      bundle,
      async (entry, writeTo) => {
        const member = classify(entry.name);
        // The backup's folder is a directory entry; everything else taken is a plain file.
        const wrongType =
          member && member.kind !== 'skip' && (member.kind === 'folder') !== (entry.type === 'directory');
        if (!member || entry.type === 'other' || wrongType) {
          throw new VerificationError(`${shown} holds ${entry.name}, which \`lmsctl backup bundle\` never writes`);
        }
        if (member.kind === 'skip') return;
        if (member.kind === 'manifest') manifests.add(member.dump);
        else dumps.add(member.dump);
        // Created for a file of the folder too: a bundle repacked by another tar may lack the folder's entry.
        if (member.kind === 'folder' || member.kind === 'folder-file') {
          await mkdir(path.join(folder, member.dump), { recursive: true, mode: 0o700 });
        }
        if (member.kind !== 'folder') await writeTo(path.join(folder, entry.name));
      },
      signal,
    );
    const [dump, ...others] = [...dumps];
    if (!dump || others.length) {
      throw new VerificationError(
        `${shown} holds ${dumps.size === 0 ? 'no backup' : `${dumps.size} backups (${[...dumps].join(', ')})`}; a bundle of \`lmsctl backup bundle\` holds one`,
      );
    }
    if (!manifests.has(dump)) {
      throw new VerificationError(`${shown} holds ${dump} without its manifest ${path.basename(manifestPathOf(dump))}`);
    }
    ctx.out.info(`unpacked ${dump} from ${shown} into ${folder}`);
    return { bundle, dumpPath: path.join(folder, dump), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}
