import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import os from 'node:os';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VerificationError } from '@lms/core/basics';
import { createDecryptStream, readEncryptionHeader, type BackupKey } from './crypto.js';
import {
  lastErrorLines,
  parseArchiveListing,
  startPgTool,
  toolFailure,
  type ArchiveListing,
  type PgToolsOptions,
} from '../../postgres/tools.js';

/** Bytes read per step when hashing; one buffer is reused, so memory stays flat for any file size. */
const HASH_BUFFER_BYTES = 1024 * 1024;

/**
 * SHA-256 of a file, read into one reused buffer: streaming would allocate a buffer per chunk
 * and leave hundreds of megabytes to the garbage collector on a large dump.
 */
export async function sha256OfFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(HASH_BUFFER_BYTES);
  const handle = await open(file, 'r');
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

function hashingPassThrough(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
}

/**
 * A sink that feeds a child's stdin for as long as the child reads it, then quietly discards
 * the rest: pg_restore --list stops reading after the table of contents, but the whole
 * stream must still be consumed (and, when encrypted, authenticated).
 */
function feedWhileOpen(stdin: NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean }): Writable {
  let open = true;
  stdin.on('error', () => {
    open = false;
  });
  stdin.on('close', () => {
    open = false;
  });
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!open || stdin.destroyed) return callback();
      if (stdin.write(chunk)) return callback();
      const done = () => {
        stdin.removeListener('drain', done);
        stdin.removeListener('close', done);
        callback();
      };
      stdin.once('drain', done);
      stdin.once('close', done);
    },
    final(callback) {
      if (open && !stdin.destroyed) stdin.end();
      callback();
    },
  });
}

/** Writes every chunk to each target, and is done with a chunk once all of them are. */
function fanOut(targets: Writable[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      let pending = targets.length;
      let failed = false;
      for (const target of targets) {
        target.write(chunk, (error) => {
          if (failed) return;
          if (error) {
            failed = true;
            callback(error);
          } else if (--pending === 0) callback();
        });
      }
    },
    final(callback) {
      let pending = targets.length;
      for (const target of targets) target.end(() => --pending === 0 && callback());
    },
  });
}

/**
 * `pg_restore --file=<null device>` of an archive (a file or folder, or stdin when null): the
 * whole archive written out as a script to nowhere, so every data block is read and
 * decompressed — what `--list`, which reads only the table of contents, never does.
 */
export function startDeepRead(archive: string | null, options: PgToolsOptions & { signal?: AbortSignal }) {
  return startPgTool('pg_restore', [`--file=${os.devNull}`, ...(archive === null ? [] : [archive])], {
    ...options,
    stdin: archive === null ? 'pipe' : 'ignore',
    cancelSignal: options.signal,
  });
}

/**
 * Why the deep read failed (its last error lines), or null when it read everything. A missing
 * pg_restore or an interruption is no verdict on the backup: thrown.
 */
export async function finishDeepRead(reader: ReturnType<typeof startDeepRead>): Promise<string | null> {
  try {
    await reader;
    return null;
  } catch (error) {
    const failure = error as { isCanceled?: boolean; exitCode?: number; stderr?: unknown };
    if (failure.isCanceled || failure.exitCode === undefined) throw toolFailure('pg_restore', error);
    return lastErrorLines(typeof failure.stderr === 'string' ? failure.stderr : '');
  }
}

export interface ArchiveCheck {
  sha256: string;
  sizeBytes: number;
  /** Header of an encrypted backup; null for a plain one. */
  encryption: { keyId: string; chunkSize: number } | null;
  listing: ArchiveListing;
  /** Why pg_restore could not list the archive; null when it could. */
  listingError: string | null;
  /** With `deep`: why pg_restore could not read every data block; null when it could (or was not asked). */
  deepError: string | null;
}

/**
 * Reads a backup once: its SHA-256, and — for an encrypted one — every chunk's authentication,
 * while pg_restore --list proves the archive's table of contents is readable; with `deep`, a
 * second pg_restore reads every data block of the same bytes at the same time. Throws
 * VerificationError (exit 3) when the archive cannot be read.
 */
export async function checkArchive(
  file: string,
  options: PgToolsOptions & { key?: BackupKey; signal?: AbortSignal; deep?: boolean },
): Promise<ArchiveCheck> {
  const header = await readEncryptionHeader(file);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sizeBytes += chunk.length;
      hash.update(chunk);
      callback(null, chunk);
    },
  });

  if (!header) {
    const deepRead = options.deep ? finishDeepRead(startDeepRead(file, options)) : Promise.resolve(null);
    const [sha256, listed, info, deepError] = await Promise.all([
      sha256OfFile(file, options.signal),
      listArchiveFile(file, options),
      stat(file),
      deepRead,
    ]);
    return {
      sha256,
      sizeBytes: info.size,
      encryption: null,
      listing: listed.listing,
      listingError: listed.error,
      deepError,
    };
  }

  if (!options.key) {
    throw new VerificationError(
      `${file} is encrypted (key id ${header.keyId}): set LMS_BACKUP_KEY_FILE to the key it was made with`,
    );
  }
  const lister = startPgTool('pg_restore', ['--list'], {
    ...options,
    stdin: 'pipe',
    stdout: 'pipe',
    cancelSignal: options.signal,
  });
  const listingText = collect(lister.stdout!);
  // The decrypted stream goes to both at once: it is never written to disk.
  const reader = options.deep ? startDeepRead(null, options) : null;
  const readerError = reader ? finishDeepRead(reader) : Promise.resolve(null);
  readerError.catch(() => undefined);
  const sink = reader
    ? fanOut([feedWhileOpen(lister.stdin!), feedWhileOpen(reader.stdin!)])
    : feedWhileOpen(lister.stdin!);
  await pipeline(createReadStream(file), counter, createDecryptStream(options.key), sink, {
    signal: options.signal,
  }).catch(async (error: unknown) => {
    lister.kill();
    reader?.kill();
    await Promise.all([lister.catch(() => undefined), readerError.catch(() => undefined)]);
    throw error;
  });
  const listingError = await finishLister(lister);
  return {
    sha256: hash.digest('hex'),
    sizeBytes,
    encryption: { keyId: header.keyId, chunkSize: header.chunkSize },
    listing: parseArchiveListing(await listingText),
    listingError,
    deepError: await readerError,
  };
}

/**
 * `pg_restore --list` of an archive file: proves the header and table of contents are readable
 * (it reads nothing else, so it is quick even for a large dump).
 */
export async function listArchiveFile(
  file: string,
  options: PgToolsOptions & { signal?: AbortSignal },
): Promise<{ listing: ArchiveListing; error: string | null }> {
  const lister = startPgTool('pg_restore', ['--list', file], {
    ...options,
    stdout: 'pipe',
    cancelSignal: options.signal,
  });
  const text = collect(lister.stdout!);
  const error = await finishLister(lister);
  return { listing: parseArchiveListing(await text), error };
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8');
  return text;
}

async function finishLister(lister: ReturnType<typeof startPgTool>): Promise<string | null> {
  try {
    await lister;
    return null;
  } catch (error) {
    if ((error as { isCanceled?: boolean }).isCanceled) throw error;
    const stderr = (error as { stderr?: unknown }).stderr;
    return lastErrorLines(typeof stderr === 'string' ? stderr : '');
  }
}

/**
 * Compares a check with what the manifest promises — size, then checksum, then readability, so
 * the message names the most telling difference. VerificationError (exit 3) on any of them.
 */
export function assertMatchesManifest(
  check: Pick<ArchiveCheck, 'sizeBytes' | 'sha256' | 'listingError'> & { deepError?: string | null },
  manifest: { sizeBytes: number; sha256: string },
  name: string,
): void {
  if (check.sizeBytes !== manifest.sizeBytes) {
    throw new VerificationError(
      `${name} is ${check.sizeBytes} bytes, the manifest says ${manifest.sizeBytes} (truncated or replaced)`,
    );
  }
  if (check.sha256 !== manifest.sha256) {
    throw new VerificationError(`${name} does not match its manifest's sha256 (corrupted or replaced)`);
  }
  if (check.listingError) {
    throw new VerificationError(`${name} is not a readable pg_dump archive: ${check.listingError}`);
  }
  if (check.deepError) throw deepReadError(name, check.deepError);
}

/** A deep read that failed: the archive's checksums may match, but its data cannot be restored. */
export function deepReadError(name: string, detail: string): VerificationError {
  return new VerificationError(`${name}: pg_restore could not read every data block (${detail})`);
}

/** Decrypts an encrypted backup into `target` (created owner-only), authenticating every chunk. */
export async function decryptToFile(
  file: string,
  key: BackupKey,
  target: string,
  signal?: AbortSignal,
): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(
    createReadStream(file),
    hashingPassThrough(hash),
    createDecryptStream(key),
    createWriteStream(target, { mode: 0o600, flags: 'wx' }),
    { signal },
  );
  return hash.digest('hex');
}
