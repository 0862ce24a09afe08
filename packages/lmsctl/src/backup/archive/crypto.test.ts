import { hkdfSync, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, type Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VerificationError } from '@lms/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliError, ExitCode } from '../../errors.js';
import {
  type BackupKey,
  createDecryptStream,
  createEncryptStream,
  ENCRYPTION_ALGORITHM,
  generateBackupKeyHex,
  keyIdOf,
  readBackupKey,
  readEncryptionHeader,
} from './crypto.js';

const HEADER = 53;
const TAG = 16;
const SMALL = 4096;
const RECORD = SMALL + TAG;

const master = randomBytes(32);
const key: BackupKey = { key: master, keyId: keyIdOf(master) };
const otherMaster = randomBytes(32);
const otherKey: BackupKey = { key: otherMaster, keyId: keyIdOf(otherMaster) };

/** Yields `input` in pieces whose sizes cycle through `sizes`. */
function* pieces(input: Buffer, sizes: readonly number[]): Generator<Buffer> {
  let offset = 0;
  for (let i = 0; offset < input.length; i += 1) {
    const size = sizes[i % sizes.length]!;
    yield input.subarray(offset, offset + size);
    offset += size;
  }
}

/** Pipes `input` through `transform` with stream.pipeline; collects what came out and any error. */
async function run(transform: Transform, input: Buffer, sizes: readonly number[] = [64 * 1024]) {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  let error: unknown;
  try {
    await pipeline(Readable.from(pieces(input, sizes)), transform, sink);
  } catch (caught) {
    error = caught;
  }
  return { output: Buffer.concat(chunks), error };
}

async function encrypt(plaintext: Buffer, chunkSize?: number, sizes?: readonly number[]): Promise<Buffer> {
  const { output, error } = await run(createEncryptStream(key, chunkSize ? { chunkSize } : {}), plaintext, sizes);
  expect(error).toBeUndefined();
  return output;
}

async function decrypt(ciphertext: Buffer, sizes?: readonly number[], withKey: BackupKey = key) {
  return run(createDecryptStream(withKey), ciphertext, sizes);
}

/** Decrypts following the documented format alone, to pin the format rather than the implementation. */
function referenceDecrypt(masterKey: Buffer, file: Buffer): Buffer {
  const header = file.subarray(0, HEADER);
  const chunkSize = header.readUInt32BE(9);
  const fileKey = Buffer.from(hkdfSync('sha256', masterKey, header.subarray(21, 53), 'lms-backup-v1', 32));
  const parts: Buffer[] = [];
  const recordSize = chunkSize + TAG;
  for (let offset = HEADER, index = 0; offset < file.length; offset += recordSize, index += 1) {
    const record = file.subarray(offset, Math.min(file.length, offset + recordSize));
    const iv = Buffer.alloc(12);
    iv.writeUIntBE(index, 5, 6);
    iv[11] = offset + recordSize >= file.length ? 1 : 0;
    const decipher = createDecipheriv('aes-256-gcm', fileKey, iv, { authTagLength: TAG });
    decipher.setAAD(header);
    decipher.setAuthTag(record.subarray(record.length - TAG));
    parts.push(decipher.update(record.subarray(0, record.length - TAG)), decipher.final());
  }
  return Buffer.concat(parts);
}

function flipped(buffer: Buffer, offset: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[offset]! ^= 0x01;
  return copy;
}

function expectVerification(error: unknown, message: string | RegExp): void {
  expect(error).toBeInstanceOf(VerificationError);
  const text = (error as Error).message;
  if (typeof message === 'string') expect(text).toBe(message);
  else expect(text).toMatch(message);
  expect(text).not.toContain(master.toString('hex'));
  expect(text).not.toContain(master.toString('base64'));
}

describe('encrypt / decrypt round trip', () => {
  it.each([0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL + 17])(
    'round-trips %i bytes with 4 KiB chunks',
    async (size) => {
      const plaintext = randomBytes(size);
      const ciphertext = await encrypt(plaintext, SMALL);
      const chunks = Math.max(1, Math.ceil(size / SMALL));
      expect(ciphertext.length).toBe(HEADER + size + chunks * TAG);
      expect(referenceDecrypt(master, ciphertext).equals(plaintext)).toBe(true);
      const { output, error } = await decrypt(ciphertext);
      expect(error).toBeUndefined();
      expect(output.equals(plaintext)).toBe(true);
    },
  );

  it('round-trips several MB with the default 1 MiB chunk size', async () => {
    const plaintext = randomBytes(5 * 1024 * 1024 + 123);
    const ciphertext = await encrypt(plaintext);
    expect(ciphertext.readUInt32BE(9)).toBe(1024 * 1024);
    expect(ciphertext.length).toBe(HEADER + plaintext.length + 6 * TAG);
    const { output, error } = await decrypt(ciphertext);
    expect(error).toBeUndefined();
    expect(output.equals(plaintext)).toBe(true);
  });

  it('writes the documented header', async () => {
    const ciphertext = await encrypt(Buffer.from('hello'), SMALL);
    expect(ciphertext.subarray(0, 8).toString('latin1')).toBe('LMSENC01');
    expect(ciphertext[8]).toBe(1);
    expect(ciphertext.readUInt32BE(9)).toBe(SMALL);
    expect(ciphertext.subarray(13, 21).toString('hex')).toBe(key.keyId);
    // A fresh salt per file: the same input never gives the same bytes twice.
    const again = await encrypt(Buffer.from('hello'), SMALL);
    expect(again.subarray(21, 53).equals(ciphertext.subarray(21, 53))).toBe(false);
    expect(ENCRYPTION_ALGORITHM).toBe('aes-256-gcm-chunked-v1');
  });

  it('gives the same result whatever the sizes of the writes', async () => {
    const plaintext = randomBytes(3 * SMALL + 17 + 200_000);
    const oddSizes = [1, 7, 100_000, 4095, 4097, 4112, 13];
    const fromOddWrites = await encrypt(plaintext, SMALL, oddSizes);
    const fromOneWrite = await encrypt(plaintext, SMALL, [plaintext.length]);
    expect(fromOddWrites.length).toBe(fromOneWrite.length);
    for (const [ciphertext, sizes] of [
      [fromOddWrites, [plaintext.length + 10_000]],
      [fromOneWrite, oddSizes],
      [fromOddWrites, [1]],
    ] as const) {
      const { output, error } = await decrypt(ciphertext, sizes);
      expect(error).toBeUndefined();
      expect(output.equals(plaintext)).toBe(true);
    }
  });

  it('decrypts as the input arrives instead of waiting for the end', async () => {
    const plaintext = randomBytes(4 * SMALL);
    const ciphertext = await encrypt(plaintext, SMALL);
    const stream = createDecryptStream(key);
    const received: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => received.push(chunk));
    const finished = new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject));
    stream.write(ciphertext.subarray(0, HEADER + 2 * RECORD + 100));
    await new Promise((resolve) => setImmediate(resolve));
    // Chunks 0 and 1 are known not to be last once bytes of chunk 2 arrived.
    expect(Buffer.concat(received).equals(plaintext.subarray(0, 2 * SMALL))).toBe(true);
    stream.end(ciphertext.subarray(HEADER + 2 * RECORD + 100));
    await finished;
    expect(Buffer.concat(received).equals(plaintext)).toBe(true);
  });

  it.each([
    ['encrypt', () => createEncryptStream(key, { chunkSize: SMALL })],
    ['decrypt', () => createDecryptStream(key)],
  ])('%s stops taking input while nobody reads its output', async (name, make) => {
    const stream = make();
    const input = name === 'decrypt' ? await encrypt(randomBytes(100 * SMALL), SMALL) : randomBytes(100 * SMALL);
    let written = 0;
    for (const piece of pieces(input, [16 * 1024])) {
      written += piece.length;
      if (!stream.write(piece)) break;
    }
    expect(written).toBeLessThan(256 * 1024);
    stream.destroy();
  });

  it('refuses a chunk size out of range and a key whose id does not match', () => {
    expect(() => createEncryptStream(key, { chunkSize: 1000 })).toThrow(RangeError);
    expect(() => createEncryptStream(key, { chunkSize: 32 * 1024 * 1024 })).toThrow(RangeError);
    expect(() => createDecryptStream({ key: master, keyId: otherKey.keyId })).toThrow(TypeError);
  });
});

describe('decrypt refuses damaged or foreign input', () => {
  const plaintext = randomBytes(3 * SMALL + 17);
  let ciphertext: Buffer;

  beforeAll(async () => {
    ciphertext = await encrypt(plaintext, SMALL);
    expect(ciphertext.length).toBe(HEADER + 3 * RECORD + 17 + TAG);
  });

  it('refuses the wrong key before emitting anything', async () => {
    const { output, error } = await decrypt(ciphertext, undefined, otherKey);
    expectVerification(
      error,
      `this backup was encrypted with another key (key id ${key.keyId}; LMS_BACKUP_KEY_FILE holds key id ${otherKey.keyId})`,
    );
    expect(output.length).toBe(0);
  });

  it('refuses a plain, unencrypted file at once', async () => {
    const { output, error } = await decrypt(Buffer.from('PGDMP\x01\x0e\x00 a custom-format dump'));
    expectVerification(error, 'not an lmsctl-encrypted backup (bad header)');
    expect(output.length).toBe(0);
  });

  it('detects a flipped bit in the header', async () => {
    expectVerification((await decrypt(flipped(ciphertext, 0))).error, 'not an lmsctl-encrypted backup (bad header)');
    expectVerification((await decrypt(flipped(ciphertext, 8))).error, /bad header.*unsupported format version 0/);
    expectVerification((await decrypt(flipped(ciphertext, 9))).error, /bad header.*chunk size \d+ is out of range/);
    // Still in range: the header is bound into every tag.
    expectVerification((await decrypt(flipped(ciphertext, 11))).error, /chunk 0 failed authentication/);
    expectVerification((await decrypt(flipped(ciphertext, 15))).error, /encrypted with another key/);
    const salt = await decrypt(flipped(ciphertext, 40));
    expectVerification(salt.error, /^encrypted backup is corrupt or was tampered with: chunk 0 failed authentication$/);
    expect(salt.output.length).toBe(0);
  });

  it('detects a flipped bit in the first chunk without emitting it', async () => {
    const { output, error } = await decrypt(flipped(ciphertext, HEADER + 10));
    expectVerification(error, 'encrypted backup is corrupt or was tampered with: chunk 0 failed authentication');
    expect(output.length).toBe(0);
  });

  it('emits only the chunks before a damaged one', async () => {
    const { output, error } = await decrypt(flipped(ciphertext, HEADER + 2 * RECORD + 5), [1000]);
    expectVerification(error, /chunk 2 failed authentication/);
    expect(output.equals(plaintext.subarray(0, 2 * SMALL))).toBe(true);
  });

  it('detects a flipped bit in the last tag', async () => {
    const { output, error } = await decrypt(flipped(ciphertext, ciphertext.length - 1));
    expectVerification(error, /^encrypted backup is corrupt or was tampered with: chunk 3 failed authentication/);
    expect(output.equals(plaintext.subarray(0, 3 * SMALL))).toBe(true);
  });

  it('detects the final chunk dropped at a chunk boundary', async () => {
    const { output, error } = await decrypt(ciphertext.subarray(0, HEADER + 3 * RECORD));
    expectVerification(error, 'encrypted backup is truncated');
    expect(output.equals(plaintext.subarray(0, 2 * SMALL))).toBe(true);
    expectVerification((await decrypt(ciphertext.subarray(0, HEADER))).error, 'encrypted backup is truncated');
  });

  it('detects a file cut inside a chunk', async () => {
    const midChunk = await decrypt(ciphertext.subarray(0, HEADER + RECORD + 2000));
    expectVerification(midChunk.error, /chunk 1 failed authentication.*cut short/);
    const fewBytes = await decrypt(ciphertext.subarray(0, HEADER + RECORD + 5));
    expectVerification(fewBytes.error, 'encrypted backup is truncated');
    expect(fewBytes.output.equals(plaintext.subarray(0, SMALL))).toBe(true);
  });

  it('detects a file cut inside the header', async () => {
    for (const length of [0, 5, 8, 20, HEADER - 1]) {
      const { output, error } = await decrypt(ciphertext.subarray(0, length));
      expectVerification(error, 'encrypted backup is truncated');
      expect(output.length).toBe(0);
    }
  });

  it('detects two chunks swapped', async () => {
    const swapped = Buffer.concat([
      ciphertext.subarray(0, HEADER),
      ciphertext.subarray(HEADER + RECORD, HEADER + 2 * RECORD),
      ciphertext.subarray(HEADER, HEADER + RECORD),
      ciphertext.subarray(HEADER + 2 * RECORD),
    ]);
    const { output, error } = await decrypt(swapped);
    expectVerification(error, /chunk 0 failed authentication/);
    expect(output.length).toBe(0);
  });

  it('detects data appended after the end', async () => {
    // A few stray bytes after a short last chunk are recognised as such.
    for (const extra of [Buffer.from('\n'), randomBytes(40)]) {
      const { output, error } = await decrypt(Buffer.concat([ciphertext, extra]));
      expectVerification(error, 'encrypted backup has unexpected data after its end');
      expect(output.equals(plaintext.subarray(0, 3 * SMALL))).toBe(true);
    }
    // After a full last chunk, anything appended is recognised, however long.
    const full = await encrypt(plaintext.subarray(0, 2 * SMALL), SMALL);
    for (const extra of [randomBytes(3), randomBytes(5000), full]) {
      const { error } = await decrypt(Buffer.concat([full, extra]));
      expectVerification(error, 'encrypted backup has unexpected data after its end');
    }
    // More than a few bytes after a short last chunk cannot be told from corruption, but is refused.
    const { error } = await decrypt(Buffer.concat([ciphertext, randomBytes(1000)]));
    expectVerification(error, /chunk 3 failed authentication/);
  });
});

describe('files on disk', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lms-backup-crypto-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('readEncryptionHeader', () => {
    it('reads the key id and chunk size of an encrypted file, and null for a plain one', async () => {
      const encrypted = path.join(dir, 'db.dump.enc');
      await writeFile(encrypted, await encrypt(randomBytes(10_000), 8192));
      expect(await readEncryptionHeader(encrypted)).toEqual({ keyId: key.keyId, chunkSize: 8192 });

      const plain = path.join(dir, 'db.dump');
      await writeFile(plain, 'PGDMP plain custom-format dump, long enough to fill a header easily');
      expect(await readEncryptionHeader(plain)).toBeNull();
      const empty = path.join(dir, 'empty.dump');
      await writeFile(empty, '');
      expect(await readEncryptionHeader(empty)).toBeNull();

      const cut = path.join(dir, 'cut.dump.enc');
      await writeFile(cut, (await encrypt(Buffer.alloc(0))).subarray(0, 30));
      await expect(readEncryptionHeader(cut)).rejects.toThrow('encrypted backup is truncated');
    });
  });

  describe('readBackupKey', () => {
    const bytes = randomBytes(32);
    const backupDir = () => path.join(dir, 'backups');

    async function keyError(file: string, options: { backupDir?: string } = {}): Promise<CliError> {
      const error: unknown = await readBackupKey(file, options).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(CliError);
      const cliError = error as CliError;
      expect(cliError.exitCode).toBe(ExitCode.usage);
      expect(cliError.message).toMatch(/^LMS_BACKUP_KEY_FILE: /);
      expect(cliError.message).not.toContain('\n');
      return cliError;
    }

    beforeAll(async () => {
      await mkdir(backupDir(), { recursive: true });
    });

    it('accepts hex, base64 and raw keys and gives the same key for the same bytes', async () => {
      const files = {
        'key.hex': `${bytes.toString('hex')}\n`,
        'key-upper.hex': `  ${bytes.toString('hex').toUpperCase()}\r\n`,
        'key.b64': `${bytes.toString('base64')}\n`,
        'key-unpadded.b64': bytes.toString('base64').replace(/=+$/, ''),
        'key.bin': bytes,
      };
      for (const [name, content] of Object.entries(files)) {
        const file = path.join(dir, name);
        await writeFile(file, content);
        const read = await readBackupKey(file, { backupDir: backupDir() });
        expect(read.key.equals(bytes), name).toBe(true);
        expect(read.keyId).toBe(keyIdOf(bytes));
      }
    });

    it('resolves relative paths against the working directory', async () => {
      await writeFile(path.join(dir, 'relative.hex'), bytes.toString('hex'));
      const before = process.cwd();
      process.chdir(dir);
      try {
        expect((await readBackupKey('relative.hex', { backupDir: 'backups' })).key.equals(bytes)).toBe(true);
        await writeFile(path.join(backupDir(), 'relative.hex'), bytes.toString('hex'));
        expect((await keyError('backups/relative.hex', { backupDir: './backups/' })).message).toContain(
          'inside the backup folder',
        );
      } finally {
        process.chdir(before);
      }
    });

    it('rejects wrong lengths and formats without echoing the content', async () => {
      const secretish = randomBytes(31);
      const cases: Record<string, string | Buffer> = {
        'short.hex': secretish.toString('hex'),
        'half.hex': randomBytes(16).toString('hex'), // exactly 32 characters: text, not a raw key
        'short.b64': secretish.toString('base64'),
        'short.bin': Buffer.concat([Buffer.from([0xff]), secretish.subarray(1)]),
        'long.bin': Buffer.concat([Buffer.from([0xff]), randomBytes(32)]),
        'prose.txt': 'my backup password is hunter2!',
        'empty.txt': '\n',
      };
      for (const [name, content] of Object.entries(cases)) {
        const file = path.join(dir, name);
        await writeFile(file, content);
        const error = await keyError(file);
        expect(error.message).toContain(file);
        const text = Buffer.from(content).toString('latin1').trim();
        if (text.length > 0) expect(error.message, name).not.toContain(text);
        expect(error.message).not.toContain(secretish.toString('hex'));
        expect(error.message).not.toContain('hunter2');
      }
      expect((await keyError(path.join(dir, 'short.hex'))).message).toContain('62 hex characters');
      expect((await keyError(path.join(dir, 'prose.txt'))).message).toContain('64 hex characters, base64');
    });

    it('refuses a key file inside the backup folder, also through a symlinked folder', async () => {
      const inside = path.join(backupDir(), 'backup.key');
      await writeFile(inside, bytes.toString('hex'));
      const direct = await keyError(inside, { backupDir: backupDir() });
      expect(direct.message).toContain('protects nothing');

      const linkedDir = path.join(dir, 'backups-link');
      await symlink(backupDir(), linkedDir, 'dir');
      // The folder named through a symlink, the key by its real path, and the other way round.
      await keyError(inside, { backupDir: linkedDir });
      await keyError(path.join(linkedDir, 'backup.key'), { backupDir: backupDir() });

      // A symlink inside the backup folder that points at the key is just as exposed.
      const outside = path.join(dir, 'outside.key');
      await writeFile(outside, bytes.toString('hex'));
      await symlink(outside, path.join(backupDir(), 'linked.key'));
      await keyError(path.join(backupDir(), 'linked.key'), { backupDir: backupDir() });

      // Outside the folder, and a folder that does not exist yet, are fine.
      expect((await readBackupKey(outside, { backupDir: backupDir() })).key.equals(bytes)).toBe(true);
      const notYet = path.join(dir, 'not-yet', 'backups');
      expect((await readBackupKey(outside, { backupDir: notYet })).key.equals(bytes)).toBe(true);
      // A sibling whose name merely starts with the folder's name is not inside it.
      await mkdir(`${backupDir()}-old`);
      await writeFile(path.join(`${backupDir()}-old`, 'k'), bytes.toString('hex'));
      expect((await readBackupKey(path.join(`${backupDir()}-old`, 'k'), { backupDir: backupDir() })).keyId).toBe(
        keyIdOf(bytes),
      );
    });

    it('reports a missing file with how to create one', async () => {
      const missing = path.join(dir, 'nope', 'backup.key');
      const error = await keyError(missing);
      expect(error.message).toBe(
        `LMS_BACKUP_KEY_FILE: key file not found: ${missing}; create one with \`openssl rand -hex 32 > ${missing}\` and keep it outside the backup folder`,
      );
    });

    it('reports a directory and an unreadable file', async () => {
      expect((await keyError(dir)).message).toContain('is a directory');
      if (process.getuid?.() === 0) return; // root reads anything
      const locked = path.join(dir, 'locked.key');
      await writeFile(locked, bytes.toString('hex'));
      await chmod(locked, 0o000);
      expect((await keyError(locked)).message).toContain('permission denied');
    });
  });

  it('generates keys that readBackupKey accepts', async () => {
    const hex = generateBackupKeyHex();
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(generateBackupKeyHex()).not.toBe(hex);
    const file = path.join(dir, 'generated.key');
    await writeFile(file, `${hex}\n`);
    const read = await readBackupKey(file, {});
    expect(read.key.toString('hex')).toBe(hex);
    expect(read.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(keyIdOf(read.key)).toBe(read.keyId);
  });
});
