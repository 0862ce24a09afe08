import { link, lstat, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { manifestPathOf } from './manifest.js';
import { fileStamp } from '../stamp.js';

/**
 * The backup folder's layout: `lms_YYYYMMDD_HHMMSS[_N].dump` (UTC, one pg_dump custom-format
 * file) or `lms_YYYYMMDD_HHMMSS[_N].dump.d` (a pg_dump directory-format folder, from
 * `backup --jobs N`), its manifest `….json`, the result of its last verification
 * `….verify.json`, and temporary `.…partial` files and folders (partial-files.ts) that only
 * ever become backups by an atomic link/rename.
 */
export const BACKUP_FILE_PATTERN = /^lms_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})(?:_(\d+))?\.dump(\.d)?$/;

/** pg_dump's archive formats lmsctl writes: `--format=custom` (one file) or `--format=directory` (a folder, parallel). */
export type ArchiveKind = 'custom' | 'directory';

/** `lms_20261128_141700.dump` (or `….dump.d` for a directory) for a UTC instant (sequence > 1 adds `_N`). */
export function backupFileName(at: Date, sequence = 1, kind: ArchiveKind = 'custom'): string {
  const stamp = fileStamp(at);
  return `lms_${stamp}${sequence > 1 ? `_${sequence}` : ''}.dump${kind === 'directory' ? '.d' : ''}`;
}

/** When the backup named `name` was started and its kind, from its name; null for other names. */
export function backupTimeOf(name: string): { at: Date; sequence: number; kind: ArchiveKind } | null {
  const match = BACKUP_FILE_PATTERN.exec(name);
  if (!match) return null;
  const [, y, mo, d, h, mi, s, seq, folder] = match;
  return {
    at: new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`),
    sequence: seq ? Number(seq) : 1,
    kind: folder ? 'directory' : 'custom',
  };
}

/** Creates the backup folder (owner-only when new). */
export async function ensureBackupDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/**
 * Gives a finished temporary dump its final name without ever replacing an existing backup:
 * `link` fails when the name exists, so two backups in the same second get `_2`, `_3`, ….
 * A directory is renamed: a rename over a folder that is not empty fails (a finished backup
 * folder always holds its toc.dat), so a race for one name still ends with distinct names.
 */
export async function publishDump(
  temporary: string,
  dir: string,
  startedAt: Date,
  kind: ArchiveKind = 'custom',
): Promise<string> {
  if (kind === 'directory') return publishDirectory(temporary, dir, startedAt);
  for (let sequence = 1; sequence < 1000; sequence++) {
    const candidate = path.join(dir, backupFileName(startedAt, sequence));
    // One sequence for both kinds: the names then say which of two same-second backups is newer.
    if (await exists(backupFileName(startedAt, sequence, 'directory'), dir)) continue;
    try {
      await link(temporary, candidate);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EXDEV') {
        // File systems without hard links (some network shares): check, then rename.
        if (await exists(candidate)) continue;
        await rename(temporary, candidate);
        return candidate;
      }
      throw error;
    }
    await unlink(temporary);
    return candidate;
  }
  throw new Error(`more than 999 backups started in the same second in ${dir}`);
}

async function publishDirectory(temporary: string, dir: string, startedAt: Date): Promise<string> {
  for (let sequence = 1; sequence < 1000; sequence++) {
    const candidate = path.join(dir, backupFileName(startedAt, sequence, 'directory'));
    // Checked first: POSIX would let a rename replace an empty folder of that name.
    if ((await exists(candidate)) || (await exists(backupFileName(startedAt, sequence), dir))) continue;
    try {
      await rename(temporary, candidate);
      return candidate;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another backup took the name in between (ENOTEMPTY/EEXIST on POSIX, EPERM on Windows).
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EPERM' || code === 'ENOTDIR') continue;
      throw error;
    }
  }
  throw new Error(`more than 999 backups started in the same second in ${dir}`);
}

async function exists(file: string, dir?: string): Promise<boolean> {
  return lstat(dir === undefined ? file : path.join(dir, file)).then(
    () => true,
    () => false,
  );
}

/** The outcome of the last `backup verify` (or the check at the end of `backup`). */
export interface VerificationRecord {
  checkedAt: string;
  ok: boolean;
  sha256: string | null;
  detail: string;
  /** This verification read every data block (`verify --deep`); absent in records before it existed. */
  deep?: boolean;
  /**
   * When a deep verification of these same bytes last passed: kept by the plain verifications
   * after it, dropped by a failure.
   */
  deepVerifiedAt?: string | null;
}

export function verificationPathOf(dumpPath: string): string {
  return `${dumpPath}.verify.json`;
}

/**
 * Records a verification beside the dump — only beside a real backup (named as lmsctl names
 * them): verifying or restoring an arbitrary file must not leave files next to it. Returns
 * whether it was recorded.
 */
export async function writeVerification(dumpPath: string, record: VerificationRecord): Promise<boolean> {
  if (!BACKUP_FILE_PATTERN.test(path.basename(dumpPath))) return false;
  const file = verificationPathOf(dumpPath);
  const temporary = `${file}.${process.pid}.partial`;
  await writeFile(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
  return true;
}

export async function readVerification(dumpPath: string): Promise<VerificationRecord | null> {
  try {
    return JSON.parse(await readFile(verificationPathOf(dumpPath), 'utf8')) as VerificationRecord;
  } catch {
    return null;
  }
}

export interface BackupEntry {
  name: string;
  path: string;
  kind: ArchiveKind;
  startedAt: Date;
  sequence: number;
  /** The file's size, or the sum of a directory backup's files. */
  sizeBytes: number;
  hasManifest: boolean;
}

/** Total size of the regular files directly inside `folder` (a directory archive has no subfolders). */
export async function folderSize(folder: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(folder, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    const info = await stat(path.join(folder, entry.name)).catch(() => null);
    total += info?.size ?? 0;
  }
  return total;
}

/** Every backup in `dir`, newest first. Temporary files and folders never appear. */
export async function listBackupFiles(dir: string): Promise<BackupEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const present = new Set(names);
  const entries: BackupEntry[] = [];
  for (const name of names) {
    const time = backupTimeOf(name);
    if (!time) continue;
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => null);
    if (!info || !(time.kind === 'directory' ? info.isDirectory() : info.isFile())) continue;
    entries.push({
      name,
      path: file,
      kind: time.kind,
      startedAt: time.at,
      sequence: time.sequence,
      sizeBytes: time.kind === 'directory' ? await folderSize(file) : info.size,
      hasManifest: present.has(path.basename(manifestPathOf(file))),
    });
  }
  return entries.sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || b.sequence - a.sequence);
}
