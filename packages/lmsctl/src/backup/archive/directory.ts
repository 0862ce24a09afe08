import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VerificationError } from '@lms/core/basics';
import { sha256OfFile } from './check.js';
import {
  createDecryptStream,
  createEncryptStream,
  readEncryptionHeader,
  WrongKeyError,
  type BackupKey,
} from './crypto.js';
import { setChecksum, type ArchiveFile } from './manifest.js';

/**
 * Directory-format backups (`lms_….dump.d/`, written by `backup --jobs N`): pg_dump
 * `--format=directory` writes toc.dat and one file per table's data, several tables at once. The
 * manifest lists every file with its checksum and size, and its `sha256` is the checksum over
 * that list. Encrypted, every file is encrypted on its own in the same chunked format as a
 * single-file backup, under its own name: the signed manifest binds each file to its name.
 */

/** A file inside a directory backup as found on disk. */
export interface StoredFile {
  name: string;
  path: string;
  sizeBytes: number;
}

/** The table of contents pg_restore reads first; listing a directory archive needs only this file. */
export const TOC_FILE = 'toc.dat';

/**
 * The files directly inside `folder`, sorted by name. pg_dump writes nothing else there, so a
 * subfolder or a link is something a person put in, and refused (exit 3).
 */
export async function storedFilesOf(folder: string): Promise<StoredFile[]> {
  const files: StoredFile[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const file = path.join(folder, entry.name);
    if (!entry.isFile()) {
      throw new VerificationError(
        `${path.basename(folder)} holds ${entry.name}, which is not a plain file (pg_dump writes none)`,
      );
    }
    files.push({ name: entry.name, path: file, sizeBytes: (await stat(file)).size });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Owner-only files in an owner-only folder: pg_dump creates its files with the umask's mode. */
export async function restrictFolder(folder: string): Promise<void> {
  await chmod(folder, 0o700);
  for (const file of await storedFilesOf(folder)) await chmod(file.path, 0o600);
}

/** Checksum and size of every file of a plain directory archive. */
export async function hashFolder(folder: string, signal?: AbortSignal): Promise<ArchiveFile[]> {
  const entries: ArchiveFile[] = [];
  for (const file of await storedFilesOf(folder)) {
    entries.push({ name: file.name, sha256: await sha256OfFile(file.path, signal), sizeBytes: file.sizeBytes });
  }
  return entries;
}

/** Counts and hashes what passes through. */
function measuring(): { stream: Transform; result(): { sha256: string; sizeBytes: number } } {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sizeBytes += chunk.length;
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return { stream, result: () => ({ sha256: hash.digest('hex'), sizeBytes }) };
}

/**
 * Encrypts every file of `plainFolder` into `targetFolder` under the same name, removing each
 * plaintext file as soon as its ciphertext is written (the plaintext on disk never exceeds what
 * pg_dump wrote). Returns the encrypted files' checksums and sizes.
 */
export async function encryptFolder(
  plainFolder: string,
  targetFolder: string,
  key: BackupKey,
  signal?: AbortSignal,
): Promise<ArchiveFile[]> {
  await mkdir(targetFolder, { mode: 0o700 });
  const entries: ArchiveFile[] = [];
  for (const file of await storedFilesOf(plainFolder)) {
    const measured = measuring();
    await pipeline(
      createReadStream(file.path),
      createEncryptStream(key),
      measured.stream,
      createWriteStream(path.join(targetFolder, file.name), { mode: 0o600, flags: 'wx' }),
      { signal },
    );
    await unlink(file.path);
    entries.push({ name: file.name, ...measured.result() });
  }
  return entries;
}

/**
 * The files on disk against the manifest's list, by name and size only (nothing is read): a file
 * missing, one too many, or one of another size. VerificationError (exit 3) naming the first.
 */
export function assertSameFiles(present: StoredFile[], expected: ArchiveFile[], name: string): void {
  const found = new Map(present.map((file) => [file.name, file]));
  const listed = new Set(expected.map((file) => file.name));
  const missing = expected.filter((file) => !found.has(file.name));
  if (missing.length) {
    throw new VerificationError(
      `${name} lacks ${missing.map((file) => file.name).join(', ')}, which its manifest lists (deleted or never copied)`,
    );
  }
  const extra = present.filter((file) => !listed.has(file.name));
  if (extra.length) {
    throw new VerificationError(
      `${name} holds ${extra.map((file) => file.name).join(', ')}, which its manifest does not list (added later)`,
    );
  }
  for (const file of expected) {
    const sizeBytes = found.get(file.name)!.sizeBytes;
    if (sizeBytes !== file.sizeBytes) {
      throw new VerificationError(
        `${name}/${file.name} is ${sizeBytes} bytes, the manifest says ${file.sizeBytes} (truncated or replaced)`,
      );
    }
  }
}

/** A sink that drops what it is given: the decrypted data of files that only need authenticating. */
const discard = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });

/**
 * Reads every file the manifest lists, in full: its checksum must match, and with `key` every
 * chunk must authenticate. Decrypted files go to `decryptTo` (those `keep` selects, default all),
 * created owner-only. The list itself must match `setSha256` (the manifest's checksum over it).
 * VerificationError (exit 3) on the first difference.
 */
export async function readFolderAgainst(
  folder: string,
  expected: ArchiveFile[],
  setSha256: string,
  options: { key?: BackupKey; decryptTo?: string; keep?: (name: string) => boolean; signal?: AbortSignal },
): Promise<void> {
  const name = path.basename(folder);
  if (setChecksum(expected) !== setSha256) {
    throw new VerificationError(`${name}: the manifest's list of files does not match its own sha256 (edited)`);
  }
  assertSameFiles(await storedFilesOf(folder), expected, name);
  if (options.decryptTo) await mkdir(options.decryptTo, { recursive: true, mode: 0o700 });
  for (const file of expected) {
    const source = path.join(folder, file.name);
    let sha256: string;
    if (!options.key) {
      sha256 = await sha256OfFile(source, options.signal);
    } else {
      if (!(await readEncryptionHeader(source))) {
        throw new VerificationError(`${name}/${file.name} is not encrypted, but the manifest says the backup is`);
      }
      const measured = measuring();
      const sink =
        options.decryptTo && (options.keep?.(file.name) ?? true)
          ? createWriteStream(path.join(options.decryptTo, file.name), { mode: 0o600, flags: 'wx' })
          : discard();
      // The checksum is of the stored (encrypted) bytes; every chunk authenticates on the way.
      await pipeline(createReadStream(source), measured.stream, createDecryptStream(options.key), sink, {
        signal: options.signal,
      }).catch((error: unknown) => {
        // A wrong key says nothing about the file: passed on as it is (not recorded as a failure).
        if (error instanceof VerificationError && !(error instanceof WrongKeyError)) {
          throw new VerificationError(`${name}/${file.name}: ${error.message}`);
        }
        throw error;
      });
      sha256 = measured.result().sha256;
    }
    if (sha256 !== file.sha256) {
      throw new VerificationError(`${name}/${file.name} does not match its manifest's sha256 (corrupted or replaced)`);
    }
  }
}

/** Removes a temporary folder and what is in it. */
export const removeFolder = (folder: string) => rm(folder, { recursive: true, force: true });
