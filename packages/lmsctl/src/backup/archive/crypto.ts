/**
 * Streamed, chunked AES-256-GCM encryption for backup files (`aes-256-gcm-chunked-v1`).
 *
 * File layout (all integers big-endian):
 *
 *   header (53 bytes)
 *     0   8  magic "LMSENC01"
 *     8   1  format version, 1
 *     9   4  uint32 chunk size: plaintext bytes per chunk, 4 KiB..16 MiB (default 1 MiB)
 *    13   8  key id: first 8 bytes of HMAC-SHA256(masterKey, "lms-backup-key-id")
 *    21  32  random salt
 *   body
 *     chunk 0, chunk 1, …, chunk n-1: AES-256-GCM ciphertext of the chunk's plaintext, then its
 *     16-byte tag. Every chunk but the last holds exactly `chunk size` plaintext bytes; the last
 *     holds 0..chunk size (empty input still yields one, empty, final chunk).
 *
 *   file key = HKDF-SHA256(masterKey, salt, info "lms-backup-v1", 32 bytes)
 *   IV       = 11-byte chunk counter (from 0) ‖ 1 byte final flag (1 on the last chunk, else 0)
 *   AAD      = the 53 header bytes
 *
 * This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): because the counter
 * and the "last" flag are bound into each chunk's nonce and the header into every tag, reordering,
 * dropping or repeating chunks, cutting the file at a chunk boundary, appending data and flipping
 * any bit all fail authentication. The per-file salt means the master key never encrypts twice
 * under the same (key, IV) pair, so one master key can safely encrypt any number of backups.
 *
 * Chunk numbers in error messages are the 0-based counter, so chunk N starts at byte
 * 53 + N × (chunk size + 16) of the file.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { open, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { VerificationError } from '@lms/core/basics';
import { CliError, ExitCode } from '../../errors.js';

/**
 * The key at hand is not the backup's: exit 3 like any failed verification, but it says nothing
 * about the backup itself, so it is not recorded as a failed verification of it.
 */
export class WrongKeyError extends VerificationError {
  constructor(backupKeyId: string, heldKeyId: string, what: 'encrypted' | 'signed' = 'encrypted') {
    super(
      `this backup was ${what} with another key (key id ${backupKeyId}; LMS_BACKUP_KEY_FILE holds key id ${heldKeyId})`,
    );
  }
}

/** Identifies the format in manifests and `--json` output. */
export const ENCRYPTION_ALGORITHM = 'aes-256-gcm-chunked-v1';

/** A master key as read from LMS_BACKUP_KEY_FILE. */
export interface BackupKey {
  key: Buffer;
  /** 16 hex chars identifying the key, safe to print and store */
  keyId: string;
}

const MAGIC = Buffer.from('LMSENC01', 'latin1');
const FORMAT_VERSION = 1;
const HEADER_LENGTH = 53;
const KEY_ID_OFFSET = 13;
const KEY_ID_LENGTH = 8;
const SALT_OFFSET = 21;
const SALT_LENGTH = 32;
const KEY_LENGTH = 32;
const TAG_LENGTH = 16;
const DEFAULT_CHUNK_SIZE = 1024 * 1024;
const MIN_CHUNK_SIZE = 4 * 1024;
const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
const HKDF_INFO = 'lms-backup-v1';
const KEY_ID_LABEL = 'lms-backup-key-id';
// A key file is a few dozen bytes; anything bigger is the wrong file, and reading it whole
// (it might be a multi-GB dump) would be a waste before refusing it anyway.
const MAX_KEY_FILE_BYTES = 4096;
// When a chunk fails, we look for a shorter prefix of it that verifies as the final chunk, to tell
// "junk was appended" apart from "corrupt". Each probe re-decrypts the chunk, so only a few
// bytes of appended junk (a stray newline, a CRLF) are recognised; more shows up as corruption,
// unless the true last chunk was full, which is recognised whatever follows it.
const MAX_TRAILING_PROBE = 64;

const BAD_HEADER = 'not an lmsctl-encrypted backup (bad header)';
const TRUNCATED = 'encrypted backup is truncated';
const TRAILING_DATA = 'encrypted backup has unexpected data after its end';

/** First 16 hex chars of HMAC-SHA256(key, 'lms-backup-key-id'): names a key without revealing it. */
export function keyIdOf(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_ID_LABEL).digest().subarray(0, KEY_ID_LENGTH).toString('hex');
}

/** A fresh key as 64 hex chars (from randomBytes(32)), the preferred key-file content. */
export function generateBackupKeyHex(): string {
  return randomBytes(KEY_LENGTH).toString('hex');
}

function assertUsableKey(key: BackupKey): void {
  // Programming errors, not user errors: a BackupKey should only ever come from readBackupKey.
  if (key.key.length !== KEY_LENGTH) throw new TypeError(`backup key must be ${KEY_LENGTH} bytes`);
  if (key.keyId !== keyIdOf(key.key)) throw new TypeError('backup key id does not match its key');
}

function deriveFileKey(masterKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, salt, HKDF_INFO, KEY_LENGTH));
}

function chunkIv(counter: number, final: boolean): Buffer {
  const iv = Buffer.alloc(12);
  // Bytes 0..2 stay zero: 2^64 chunks is far beyond any file, so 8 of the 11 counter bytes suffice.
  iv.writeBigUInt64BE(BigInt(counter), 3);
  iv[11] = final ? 1 : 0;
  return iv;
}

function isChunkSizeAllowed(size: number): boolean {
  return Number.isInteger(size) && size >= MIN_CHUNK_SIZE && size <= MAX_CHUNK_SIZE;
}

interface ParsedHeader {
  chunkSize: number;
  keyId: string;
  salt: Buffer;
}

/** Validates a complete 53-byte header; throws VerificationError for anything but a v1 header. */
function parseHeader(header: Buffer): ParsedHeader {
  if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw new VerificationError(BAD_HEADER);
  const version = header[MAGIC.length];
  if (version !== FORMAT_VERSION) {
    throw new VerificationError(`${BAD_HEADER}: unsupported format version ${version}`);
  }
  const chunkSize = header.readUInt32BE(MAGIC.length + 1);
  if (!isChunkSizeAllowed(chunkSize)) {
    throw new VerificationError(`${BAD_HEADER}: chunk size ${chunkSize} is out of range`);
  }
  return {
    chunkSize,
    keyId: header.subarray(KEY_ID_OFFSET, KEY_ID_OFFSET + KEY_ID_LENGTH).toString('hex'),
    salt: header.subarray(SALT_OFFSET, SALT_OFFSET + SALT_LENGTH),
  };
}

/**
 * A Transform that encrypts whatever is piped through it into the format above. Memory stays
 * around one chunk plus the largest single write, whatever the file size.
 */
export function createEncryptStream(key: BackupKey, options: { chunkSize?: number } = {}): Transform {
  assertUsableKey(key);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!isChunkSizeAllowed(chunkSize)) {
    throw new RangeError(`chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  }

  const salt = randomBytes(SALT_LENGTH);
  const header = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(header, 0);
  header[MAGIC.length] = FORMAT_VERSION;
  header.writeUInt32BE(chunkSize, MAGIC.length + 1);
  Buffer.from(key.keyId, 'hex').copy(header, KEY_ID_OFFSET);
  salt.copy(header, SALT_OFFSET);
  const fileKey = deriveFileKey(key.key, salt);

  // Plaintext waiting for its chunk to fill. A full buffer is still held back until more input
  // arrives: only then is it known not to be the last chunk, whose IV differs.
  const pending = Buffer.allocUnsafe(chunkSize);
  let pendingLength = 0;
  let counter = 0;
  let headerSent = false;

  const sealChunk = (stream: Transform, plaintext: Buffer, final: boolean): void => {
    if (!headerSent) {
      stream.push(header);
      headerSent = true;
    }
    const cipher = createCipheriv('aes-256-gcm', fileKey, chunkIv(counter, final), { authTagLength: TAG_LENGTH });
    cipher.setAAD(header);
    const body = cipher.update(plaintext);
    const tail = cipher.final();
    counter += 1;
    stream.push(tail.length === 0 ? body : Buffer.concat([body, tail]));
    stream.push(cipher.getAuthTag());
  };

  return new Transform({
    transform(this: Transform, data: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      let offset = 0;
      while (offset < data.length) {
        if (pendingLength === chunkSize) {
          sealChunk(this, pending, false);
          pendingLength = 0;
        }
        // Large writes are encrypted straight from the caller's buffer, skipping the copy.
        if (pendingLength === 0 && data.length - offset > chunkSize) {
          sealChunk(this, data.subarray(offset, offset + chunkSize), false);
          offset += chunkSize;
          continue;
        }
        const copied = data.copy(
          pending,
          pendingLength,
          offset,
          Math.min(data.length, offset + chunkSize - pendingLength),
        );
        pendingLength += copied;
        offset += copied;
      }
      callback();
    },
    flush(this: Transform, callback: TransformCallback) {
      sealChunk(this, pending.subarray(0, pendingLength), true);
      callback();
    },
  });
}

/**
 * A Transform that decrypts a file written by createEncryptStream. It emits only plaintext whose
 * tag verified, and fails with VerificationError on a wrong key (before emitting anything), a
 * foreign or damaged header, corruption, truncation or data appended after the end. Until the
 * input ends it cannot know which chunk is the last, so it holds one chunk of ciphertext back.
 */
export function createDecryptStream(key: BackupKey): Transform {
  assertUsableKey(key);

  const header = Buffer.alloc(HEADER_LENGTH);
  let headerLength = 0;
  // Set once the header has been read and checked.
  let body: { fileKey: Buffer; recordSize: number; pending: Buffer } | undefined;
  let pendingLength = 0;
  let counter = 0;

  const openChunk = (fileKey: Buffer, record: Buffer, index: number, final: boolean): Buffer | null => {
    const decipher = createDecipheriv('aes-256-gcm', fileKey, chunkIv(index, final), { authTagLength: TAG_LENGTH });
    decipher.setAAD(header);
    decipher.setAuthTag(record.subarray(record.length - TAG_LENGTH));
    const plaintext = decipher.update(record.subarray(0, record.length - TAG_LENGTH));
    try {
      const tail = decipher.final();
      return tail.length === 0 ? plaintext : Buffer.concat([plaintext, tail]);
    } catch {
      return null;
    }
  };

  // Called only once `record` failed: a prefix that verifies as the final chunk is proof that the
  // writer ended there, so whatever follows was added later.
  const endsEarly = (fileKey: Buffer, record: Buffer, probeFullLength: boolean): boolean => {
    const longest = probeFullLength ? record.length : record.length - 1;
    const shortest = Math.max(TAG_LENGTH, record.length - MAX_TRAILING_PROBE);
    for (let length = longest; length >= shortest; length -= 1) {
      if (openChunk(fileKey, record.subarray(0, length), counter, true) !== null) return true;
    }
    return false;
  };

  const corrupt = (suffix = '') =>
    new VerificationError(
      `encrypted backup is corrupt or was tampered with: chunk ${counter} failed authentication${suffix}`,
    );

  const openMiddle = (stream: Transform, fileKey: Buffer, record: Buffer): void => {
    const plaintext = openChunk(fileKey, record, counter, false);
    if (plaintext === null) {
      throw endsEarly(fileKey, record, true) ? new VerificationError(TRAILING_DATA) : corrupt();
    }
    counter += 1;
    stream.push(plaintext);
  };

  const openLast = (stream: Transform, fileKey: Buffer, record: Buffer, recordSize: number): void => {
    const plaintext = openChunk(fileKey, record, counter, true);
    if (plaintext !== null) {
      stream.push(plaintext);
      return;
    }
    // A full chunk that verifies as a middle one means the writer went on: the rest was cut off.
    if (record.length === recordSize && openChunk(fileKey, record, counter, false) !== null) {
      throw new VerificationError(TRUNCATED);
    }
    if (endsEarly(fileKey, record, false)) throw new VerificationError(TRAILING_DATA);
    throw corrupt(' (it is the last chunk, so the file may also have been cut short)');
  };

  /** Consumes header bytes from `data`; returns how many it took. */
  const readHeader = (data: Buffer): number => {
    const taken = data.copy(header, headerLength, 0, HEADER_LENGTH - headerLength);
    headerLength += taken;
    // Refuse a plain dump at its first bytes rather than after buffering anything.
    const magicSeen = Math.min(headerLength, MAGIC.length);
    if (!header.subarray(0, magicSeen).equals(MAGIC.subarray(0, magicSeen))) throw new VerificationError(BAD_HEADER);
    if (headerLength < HEADER_LENGTH) return taken;

    const parsed = parseHeader(header);
    if (parsed.keyId !== key.keyId) {
      throw new WrongKeyError(parsed.keyId, key.keyId);
    }
    const recordSize = parsed.chunkSize + TAG_LENGTH;
    body = { fileKey: deriveFileKey(key.key, parsed.salt), recordSize, pending: Buffer.allocUnsafe(recordSize) };
    return taken;
  };

  return new Transform({
    transform(this: Transform, data: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      try {
        let offset = body === undefined ? readHeader(data) : 0;
        if (body === undefined) return callback();
        const { fileKey, recordSize, pending } = body;
        while (offset < data.length) {
          // A full record is only known to be a middle chunk once more input follows it.
          if (pendingLength === recordSize) {
            openMiddle(this, fileKey, pending);
            pendingLength = 0;
          }
          if (pendingLength === 0 && data.length - offset > recordSize) {
            openMiddle(this, fileKey, data.subarray(offset, offset + recordSize));
            offset += recordSize;
            continue;
          }
          const end = Math.min(data.length, offset + recordSize - pendingLength);
          const copied = data.copy(pending, pendingLength, offset, end);
          pendingLength += copied;
          offset += copied;
        }
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(this: Transform, callback: TransformCallback) {
      try {
        // Fewer bytes than a tag: the header, or a verified middle chunk (which promises another),
        // was the last complete thing in the input.
        if (body === undefined || pendingLength < TAG_LENGTH) throw new VerificationError(TRUNCATED);
        openLast(this, body.fileKey, body.pending.subarray(0, pendingLength), body.recordSize);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

/**
 * Reads only the header of `file`. Null when the file does not start with the magic (a plain,
 * unencrypted backup); VerificationError when it does but the header is cut short or invalid.
 */
export async function readEncryptionHeader(file: string): Promise<{ keyId: string; chunkSize: number } | null> {
  const handle = await open(file, 'r');
  try {
    const header = Buffer.alloc(HEADER_LENGTH);
    let length = 0;
    while (length < HEADER_LENGTH) {
      const { bytesRead } = await handle.read(header, length, HEADER_LENGTH - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length < MAGIC.length || !header.subarray(0, MAGIC.length).equals(MAGIC)) return null;
    if (length < HEADER_LENGTH) throw new VerificationError(TRUNCATED);
    const { keyId, chunkSize } = parseHeader(header);
    return { keyId, chunkSize };
  } finally {
    await handle.close();
  }
}

const KEY_FORMATS = '64 hex characters, base64 of exactly 32 bytes, or a raw 32-byte binary file';

function keyFileError(message: string): CliError {
  return new CliError(ExitCode.usage, `LMS_BACKUP_KEY_FILE: ${message}`);
}

function isInside(dir: string, target: string): boolean {
  const relative = path.relative(dir, target);
  return relative === '' || (!relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative));
}

async function realpathOrResolved(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    return file;
  }
}

/** Text of a key file with surrounding whitespace trimmed, or null when it is not plain ASCII text. */
function asText(content: Buffer): string | null {
  for (const byte of content) {
    if (byte > 0x7e || (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d)) return null;
  }
  return content.toString('latin1').trim();
}

function parseKey(content: Buffer, shown: string): Buffer {
  const text = asText(content);
  if (text === null) {
    if (content.length === KEY_LENGTH) return Buffer.from(content);
    throw keyFileError(`${shown} is a ${content.length}-byte binary file, not a key; expected ${KEY_FORMATS}`);
  }
  if (text === '') {
    throw keyFileError(`${shown} is empty; create a key with \`openssl rand -hex 32 > ${shown}\``);
  }
  if (/^[0-9a-fA-F]+$/.test(text)) {
    if (text.length === 64) return Buffer.from(text, 'hex');
    throw keyFileError(
      `${shown} holds ${text.length} hex characters; a key is 64 (32 bytes): create one with \`openssl rand -hex 32 > ${shown}\``,
    );
  }
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    const decoded = Buffer.from(text, 'base64');
    // Re-encoding rejects non-canonical base64 (wrong padding, stray low bits), which is more
    // likely a typo than a key.
    if (decoded.length === KEY_LENGTH && decoded.toString('base64').replace(/=+$/, '') === text.replace(/=+$/, '')) {
      return decoded;
    }
    throw keyFileError(
      `${shown} holds base64 of ${decoded.length} bytes; a key is exactly 32 bytes (${KEY_FORMATS}): create one with \`openssl rand -hex 32 > ${shown}\``,
    );
  }
  // A 32-byte file of printable characters is text that failed the formats above (say, 32 hex
  // chars from `openssl rand -hex 16`), not a raw key: taking it as one would halve its strength.
  throw keyFileError(
    `${shown} is not a key (${text.length} characters of text); expected ${KEY_FORMATS}: create one with \`openssl rand -hex 32 > ${shown}\``,
  );
}

/**
 * Reads the key file named by LMS_BACKUP_KEY_FILE. Accepts 64 hex chars, or base64 of exactly 32
 * bytes (text files, surrounding whitespace trimmed), or a raw 32-byte binary file. Refuses a key
 * file inside `options.backupDir`. Every failure is a one-line CliError (exit 2) that names the file,
 * never its content.
 */
export async function readBackupKey(file: string, options: { backupDir?: string }): Promise<BackupKey> {
  const resolved = path.resolve(process.cwd(), file);

  let real: string;
  try {
    real = await realpath(resolved);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw keyFileError(
        `key file not found: ${resolved}; create one with \`openssl rand -hex 32 > ${resolved}\` and keep it outside the backup folder`,
      );
    }
    throw keyFileError(
      `cannot read ${resolved} (${(error as NodeJS.ErrnoException).code ?? 'unknown error'}); check the path and its permissions`,
    );
  }

  if (options.backupDir !== undefined) {
    const dirResolved = path.resolve(process.cwd(), options.backupDir);
    const dirReal = await realpathOrResolved(dirResolved);
    // Both spellings of each path: a symlink inside the backup folder pointing at the key is
    // just as exposed to `cp -rL` or a dereferencing sync as the key itself.
    const inside = [resolved, real].some((keyPath) => [dirResolved, dirReal].some((dir) => isInside(dir, keyPath)));
    if (inside) {
      throw keyFileError(
        `${resolved} is inside the backup folder ${dirResolved}; a key stored beside the backups it encrypts protects nothing (whoever gets the backups gets the key), so move it outside the backup folder`,
      );
    }
  }

  let content: Buffer;
  try {
    const info = await stat(real);
    if (info.isDirectory()) throw keyFileError(`${resolved} is a directory; point it at the key file`);
    if (info.size > MAX_KEY_FILE_BYTES) {
      throw keyFileError(`${resolved} is ${info.size} bytes, far too big for a key; expected ${KEY_FORMATS}`);
    }
    content = await readFile(real);
  } catch (error) {
    if (error instanceof CliError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (code ?? 'unknown error');
    throw keyFileError(`cannot read ${resolved} (${reason}); make it readable by the user running lmsctl`);
  }

  const key = parseKey(content, resolved);
  return { key, keyId: keyIdOf(key) };
}
