import { stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { VerificationError } from '@lms/core/basics';
import type { CommandContext } from '../../context.js';
import type { ArchiveListing, PgToolsOptions } from '../../postgres/tools.js';
import { backupKeyOf, toolsOf, workDirOf } from '../context.js';
import { defaultJobs } from '../stamp.js';
import {
  assertMatchesManifest,
  checkArchive,
  decryptToFile,
  deepReadArchive,
  deepReadError,
  listArchiveFile,
  sha256OfFile,
} from './check.js';
import { WrongKeyError, type BackupKey } from './crypto.js';
import { assertSameFiles, readFolderAgainst, removeFolder, storedFilesOf, TOC_FILE } from './directory.js';
import { archiveKindOf, manifestPathOf, readManifest, setChecksum, type BackupManifest } from './manifest.js';
import { partialPathOf, removeStalePartials } from './partial-files.js';
import { readVerification, writeVerification, type VerificationRecord } from './store.js';

/**
 * The one place a backup is checked before anything relies on it — the full check of `backup
 * verify` and the check a restore or drill makes while it already restores — and where the
 * outcome is recorded beside the backup, so `backup list` and `migrate --require-backup` never
 * keep trusting a backup found corrupt.
 */

/** A backup checked and ready for pg_restore, possibly as a decrypted temporary copy. */
export interface PreparedArchive {
  dumpPath: string;
  manifest: BackupManifest;
  restorePath: string;
  listing: ArchiveListing;
  /**
   * Settles when the file's SHA-256 has been compared with the manifest: it runs while
   * pg_restore fills the new database, and the swap waits for it (a mismatch aborts, exit 3).
   */
  checksum: Promise<void>;
  dispose(): Promise<void>;
}

/**
 * What must hold before the server is asked to do anything: the manifest's signature, the
 * file's size and a readable archive listing — and for an encrypted backup its decryption,
 * which authenticates every chunk and computes the checksum on the way. Exit 3 otherwise.
 */
export async function prepareArchive(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  signal: AbortSignal,
): Promise<PreparedArchive> {
  const recordFailure = (error: unknown) => recordVerificationFailure(dumpPath, error);
  try {
    const archive = await prepareArchiveUnrecorded(ctx, dumpPath, dir, signal);
    const checksum = archive.checksum.catch(async (error: unknown) => {
      await recordFailure(error);
      throw error;
    });
    checksum.catch(() => undefined);
    return { ...archive, checksum };
  } catch (error) {
    await recordFailure(error);
    throw error;
  }
}

/**
 * Records what a check found: a pass with the checksum it saw, or a failure with its reason. A
 * wrong key says nothing about the backup, and other errors (a missing tool, an interruption)
 * are not verdicts, so neither is recorded. `by` says who found a failure.
 */
async function recordOutcome(
  dumpPath: string,
  outcome: { ok: true; sha256: string; detail: string; deep: boolean } | { ok: false; error: unknown; by: string },
): Promise<void> {
  let record: VerificationRecord;
  if (outcome.ok) {
    const checkedAt = new Date().toISOString();
    // A deep verification still stands after a plain one of the very same bytes.
    const previous = await readVerification(dumpPath);
    const earlierDeep = previous?.ok && previous.sha256 === outcome.sha256 ? (previous.deepVerifiedAt ?? null) : null;
    record = {
      checkedAt,
      ok: true,
      sha256: outcome.sha256,
      detail: outcome.detail,
      deep: outcome.deep,
      deepVerifiedAt: outcome.deep ? checkedAt : earlierDeep,
    };
  } else {
    const { error } = outcome;
    if (!(error instanceof VerificationError) || error instanceof WrongKeyError) return;
    record = { checkedAt: new Date().toISOString(), ok: false, sha256: null, detail: `${error.message}${outcome.by}` };
  }
  await writeVerification(dumpPath, record).catch(() => undefined);
}

/** A failure a restore or drill found, recorded as `backup verify` would record it. */
export const recordVerificationFailure = (dumpPath: string, error: unknown) =>
  recordOutcome(dumpPath, { ok: false, error, by: ' (found by a restore or drill)' });

async function prepareArchiveUnrecorded(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  signal: AbortSignal,
): Promise<PreparedArchive> {
  // Decrypted copies left by a killed restore or drill hold plaintext: gone before anything else.
  await removeStalePartials(dir);
  const work = await workDirOf(ctx, dir);
  let key: Awaited<ReturnType<typeof backupKeyOf>> | undefined;
  const getKey = async () => (key ??= await backupKeyOf(ctx, dir, 'this backup'));
  const manifest = await readManifest(manifestPathOf(dumpPath), getKey, {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  });
  const name = path.basename(dumpPath);
  if (manifest.file !== name) throw new VerificationError(`manifest names ${manifest.file}, not ${name}`);
  const tools = toolsOf(ctx);
  if (archiveKindOf(manifest) === 'directory') {
    return prepareDirectory(dumpPath, manifest, { ...tools, signal, getKey, work });
  }
  const sizeBytes = (await stat(dumpPath)).size;

  if (!manifest.encryption) {
    assertMatchesManifest({ sizeBytes, sha256: manifest.sha256, listingError: null }, manifest, name);
    const { listing, error } = await listArchiveFile(dumpPath, { ...tools, signal });
    assertMatchesManifest({ sizeBytes, sha256: manifest.sha256, listingError: error }, manifest, name);
    const checksum = sha256OfFile(dumpPath, signal).then((sha256) =>
      assertMatchesManifest({ sizeBytes, sha256, listingError: null }, manifest, name),
    );
    // Observed by the caller later; never an unhandled rejection in between.
    checksum.catch(() => undefined);
    return { dumpPath, manifest, restorePath: dumpPath, listing, checksum, dispose: () => Promise.resolve() };
  }

  const backupKey = await getKey();
  // pg_restore --jobs needs a seekable file: decrypt into the work folder, owner-only, removed after.
  const decrypted = partialPathOf(path.join(work, `.${name}`));
  const dispose = () => unlink(decrypted).catch(() => undefined);
  try {
    // The checksum and size in the manifest are of the encrypted file.
    const sha256 = await decryptToFile(dumpPath, backupKey, decrypted, signal);
    assertMatchesManifest({ sizeBytes, sha256, listingError: null }, manifest, name);
    const { listing, error } = await listArchiveFile(decrypted, { ...tools, signal });
    assertMatchesManifest({ sizeBytes, sha256, listingError: error }, manifest, name);
    return { dumpPath, manifest, restorePath: decrypted, listing, checksum: Promise.resolve(), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** The manifest's list of files (a directory backup's manifest always has one: readManifest checks). */
const filesOf = (manifest: BackupManifest) => manifest.files ?? [];

/**
 * A directory backup before a restore. Plain: the files on disk against the manifest's list
 * (names and sizes, nothing read) and the listing now, the checksums while pg_restore reads the
 * same files. Encrypted: every file decrypted into an owner-only temporary folder (authenticating
 * every chunk and checking every checksum), which pg_restore then reads.
 */
async function prepareDirectory(
  dumpPath: string,
  manifest: BackupManifest,
  options: PgToolsOptions & { signal: AbortSignal; getKey: () => Promise<BackupKey>; work: string },
): Promise<PreparedArchive> {
  const name = path.basename(dumpPath);
  const files = filesOf(manifest);
  if (!manifest.encryption) {
    if (setChecksum(files) !== manifest.sha256) {
      throw new VerificationError(`${name}: the manifest's list of files does not match its own sha256 (edited)`);
    }
    assertSameFiles(await storedFilesOf(dumpPath), files, name);
    const { listing, error } = await listArchiveFile(dumpPath, options);
    if (error) throw new VerificationError(`${name} is not a readable pg_dump archive: ${error}`);
    const checksum = readFolderAgainst(dumpPath, files, manifest.sha256, { signal: options.signal });
    checksum.catch(() => undefined);
    return { dumpPath, manifest, restorePath: dumpPath, listing, checksum, dispose: () => Promise.resolve() };
  }
  const key = await options.getKey();
  const decrypted = partialPathOf(path.join(options.work, `.${name}`));
  const dispose = () => removeFolder(decrypted);
  try {
    await readFolderAgainst(dumpPath, files, manifest.sha256, { key, decryptTo: decrypted, signal: options.signal });
    const { listing, error } = await listArchiveFile(decrypted, options);
    if (error) throw new VerificationError(`${name} is not a readable pg_dump archive: ${error}`);
    return { dumpPath, manifest, restorePath: decrypted, listing, checksum: Promise.resolve(), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/**
 * `backup verify` of a directory backup: every file read against the manifest (decrypted and
 * authenticated when encrypted, only toc.dat kept, in a temporary folder) and the listing.
 */
async function verifyDirectory(
  dumpPath: string,
  manifest: BackupManifest,
  options: PgToolsOptions & {
    key: BackupKey | undefined;
    signal?: AbortSignal;
    deep: boolean;
    jobs: number;
    work: string;
  },
): Promise<{ entries: number; dumpedBy: string | null }> {
  const name = path.basename(dumpPath);
  const files = filesOf(manifest);
  if (!options.key) {
    // Plain: the checksums, the listing and (deep) pg_restore's read of every block, all at once.
    const [checked, listed, deepError] = await Promise.allSettled([
      readFolderAgainst(dumpPath, files, manifest.sha256, { signal: options.signal }),
      listArchiveFile(dumpPath, options),
      options.deep ? deepReadArchive(dumpPath, options) : Promise.resolve(null),
    ]);
    if (checked.status === 'rejected') throw checked.reason;
    if (listed.status === 'rejected') throw listed.reason;
    if (deepError.status === 'rejected') throw deepError.reason;
    const { listing, error } = listed.value;
    if (error) throw new VerificationError(`${name} is not a readable pg_dump archive: ${error}`);
    if (deepError.value) throw deepReadError(name, deepError.value);
    return { entries: listing.entries, dumpedBy: listing.dumpedBy };
  }
  // Encrypted: pg_restore reads a folder of plain files, so what it reads is decrypted first
  // (owner-only, removed after): only toc.dat for the listing, every file for a deep read.
  const decrypted = partialPathOf(path.join(options.work, `.${name}`));
  try {
    await readFolderAgainst(dumpPath, files, manifest.sha256, {
      key: options.key,
      decryptTo: decrypted,
      keep: (file: string) => options.deep || file === TOC_FILE,
      signal: options.signal,
    });
    const { listing, error } = await listArchiveFile(decrypted, options);
    if (error) throw new VerificationError(`${name} is not a readable pg_dump archive: ${error}`);
    if (options.deep) {
      const deepError = await deepReadArchive(decrypted, options);
      if (deepError) throw deepReadError(name, deepError);
    }
    return { entries: listing.entries, dumpedBy: listing.dumpedBy };
  } finally {
    await removeFolder(decrypted);
  }
}

export interface VerifiedBackup {
  path: string;
  manifest: BackupManifest;
  key: BackupKey | undefined;
  /** TOC entries pg_restore --list read. */
  entries: number;
  /** PostgreSQL version of the pg_dump that wrote it. */
  dumpedBy: string | null;
  /** pg_restore read every data block. */
  deep: boolean;
}

/**
 * The full check of one backup, before anything relies on it: manifest signature, decryption
 * of every chunk, checksum and size against the manifest, and a readable archive listing; with
 * `deep`, pg_restore also reads every data block (`--file` to the null device), which catches
 * an archive whose data is damaged under a consistent, re-signed manifest — split over `jobs`
 * pg_restore processes (default: as many as a restore uses). Records the outcome beside the
 * dump; throws VerificationError (exit 3) on any mismatch.
 */
export async function verifyBackupFile(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  options: { signal?: AbortSignal; deep?: boolean; jobs?: number } = {},
): Promise<VerifiedBackup> {
  const { signal } = options;
  const deep = options.deep ?? false;
  let key: BackupKey | undefined;
  const getKey = async () => (key ??= await backupKeyOf(ctx, dir, 'this backup'));
  try {
    const manifest = await readManifest(manifestPathOf(dumpPath), getKey, {
      requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
    });
    if (manifest.file !== path.basename(dumpPath)) {
      throw new VerificationError(`manifest names ${manifest.file}, not ${path.basename(dumpPath)}`);
    }
    if (manifest.encryption) await getKey();
    const jobs = options.jobs ?? defaultJobs();
    let entries: number;
    let dumpedBy: string | null;
    if (archiveKindOf(manifest) === 'directory') {
      // The key may have been read only to check the manifest's signature: decrypt only what is encrypted.
      const decryptWith = manifest.encryption ? key : undefined;
      ({ entries, dumpedBy } = await verifyDirectory(dumpPath, manifest, {
        ...toolsOf(ctx),
        key: decryptWith,
        signal,
        deep,
        jobs,
        work: decryptWith ? await workDirOf(ctx, dir) : dir,
      }));
    } else {
      const check = await checkArchive(dumpPath, { ...toolsOf(ctx), key, signal, deep, jobs });
      assertMatchesManifest(check, manifest, path.basename(dumpPath));
      ({ entries, dumpedBy } = { entries: check.listing.entries, dumpedBy: check.listing.dumpedBy });
    }
    await recordOutcome(dumpPath, {
      ok: true,
      sha256: manifest.sha256,
      detail: `checksum, manifest and ${entries} archive entries verified${deep ? ', every data block read' : ''}`,
      deep,
    });
    return { path: dumpPath, manifest, key, entries, dumpedBy, deep };
  } catch (error) {
    await recordOutcome(dumpPath, { ok: false, error, by: '' });
    throw error;
  }
}
