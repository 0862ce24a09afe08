import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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

/** "3385; 0 16390 TABLE DATA public users root": a table's rows, the bulk of any archive. */
const TABLE_DATA_LINE = /^(\d+);\s+\d+\s+\d+\s+TABLE DATA\s/;

/**
 * An archive listing (`pg_restore --list`) split into at most `readers` lists for `--use-list`:
 * every table's data in exactly one of them, the heaviest first onto the lightest list (weights
 * by dump id), each list in the archive's order (a single-file archive is then read forwards);
 * every other entry, all of them small, stays in the first. One list when there is nothing to split.
 */
export function splitListing(listing: string, readers: number, weightOf: (dumpId: number) => number): string[] {
  const lines = listing.split('\n');
  const data = lines.flatMap((line, index) => {
    const match = TABLE_DATA_LINE.exec(line.trim());
    return match ? [{ index, weight: weightOf(Number(match[1])) }] : [];
  });
  const count = Math.min(readers, data.length);
  if (count < 2) return [listing];
  const shareOf = new Map<number, number>();
  const load = new Array<number>(count).fill(0);
  for (const entry of [...data].sort((a, b) => b.weight - a.weight)) {
    const lightest = load.indexOf(Math.min(...load));
    shareOf.set(entry.index, lightest);
    load[lightest]! += entry.weight;
  }
  const shares = Array.from({ length: count }, () => [] as string[]);
  lines.forEach((line, index) => shares[shareOf.get(index) ?? 0]!.push(line));
  return shares.map((share) => share.join('\n'));
}

/** Size of each data file of a directory archive by dump id ("3385.dat.gz" and the other compressions). */
async function dataFileSizes(folder: string): Promise<Map<number, number>> {
  const sizes = new Map<number, number>();
  for (const entry of await readdir(folder)) {
    const match = /^(\d+)\.dat(\.\w+)?$/.exec(entry);
    if (match) sizes.set(Number(match[1]), (await stat(path.join(folder, entry))).size);
  }
  return sizes;
}

/**
 * The deep read of an archive file or folder by `jobs` pg_restore processes at once, each
 * writing its share of the table data (splitListing) to the null device: every data block is
 * still read and decompressed exactly once, in a fraction of the time on as many cores. Returns
 * why a reader failed (the listing's or a reader's last error lines), or null; thrown as
 * finishDeepRead throws.
 */
export async function deepReadArchive(
  archive: string,
  options: PgToolsOptions & { signal?: AbortSignal; jobs: number },
): Promise<string | null> {
  if (options.jobs <= 1) return finishDeepRead(startDeepRead(archive, options));
  const listed = await listArchiveText(archive, options);
  if (listed.error) return listed.error;
  const sizes = (await stat(archive)).isDirectory() ? await dataFileSizes(archive) : new Map<number, number>();
  const shares = splitListing(listed.text, options.jobs, (dumpId) => sizes.get(dumpId) ?? 1);
  if (shares.length === 1) return finishDeepRead(startDeepRead(archive, options));
  // The lists name the archive's tables: an owner-only folder, removed after.
  const folder = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-deep-read-'));
  try {
    const lists = await Promise.all(
      shares.map(async (share, index) => {
        const file = path.join(folder, `share-${index + 1}.list`);
        await writeFile(file, share, { mode: 0o600 });
        return file;
      }),
    );
    const outcomes = await Promise.allSettled(
      lists.map((list) =>
        finishDeepRead(
          startPgTool('pg_restore', [`--file=${os.devNull}`, `--use-list=${list}`, archive], {
            ...options,
            stdin: 'ignore',
            cancelSignal: options.signal,
          }),
        ),
      ),
    );
    const thrown = outcomes.find((outcome) => outcome.status === 'rejected');
    if (thrown) throw thrown.reason;
    return outcomes.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value : null)).find(Boolean) ?? null;
  } finally {
    await rm(folder, { recursive: true, force: true });
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
 * while pg_restore --list proves the archive's table of contents is readable; with `deep`,
 * pg_restore also reads every data block of the same bytes at the same time (`jobs` of them
 * for a plain file; one fed the decrypted stream for an encrypted one). Throws
 * VerificationError (exit 3) when the archive cannot be read.
 */
export async function checkArchive(
  file: string,
  options: PgToolsOptions & { key?: BackupKey; signal?: AbortSignal; deep?: boolean; jobs?: number },
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
    const deepRead = options.deep
      ? deepReadArchive(file, { ...options, jobs: options.jobs ?? 1 })
      : Promise.resolve(null);
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
  const { text, error } = await listArchiveText(file, options);
  return { listing: parseArchiveListing(text), error };
}

/** What `pg_restore --list` prints for an archive file or folder, or why it could not. */
async function listArchiveText(
  archive: string,
  options: PgToolsOptions & { signal?: AbortSignal },
): Promise<{ text: string; error: string | null }> {
  const lister = startPgTool('pg_restore', ['--list', archive], {
    ...options,
    stdout: 'pipe',
    cancelSignal: options.signal,
  });
  const text = collect(lister.stdout!);
  const error = await finishLister(lister);
  return { text: await text, error };
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
