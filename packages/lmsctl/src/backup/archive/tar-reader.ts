import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGunzip } from 'node:zlib';
import { VerificationError } from '@lms/core/essentials';

/**
 * Reads the gzip-compressed tar files `backup bundle` writes (ustar, as archiver writes them; pax
 * and GNU long names understood too, so a bundle repacked by GNU or BSD tar still reads), one
 * entry at a time, streaming each file's bytes: a bundle holds a whole backup.
 */

const BLOCK = 512;

export interface TarEntry {
  name: string;
  type: 'file' | 'directory' | 'other';
  size: number;
}

/** Hands out exactly the bytes asked for from a stream of chunks. */
class ByteReader {
  private pending: Buffer = Buffer.alloc(0);
  private readonly chunks: AsyncIterator<Buffer>;

  constructor(stream: AsyncIterable<Buffer>) {
    this.chunks = stream[Symbol.asyncIterator]();
  }

  /** `length` bytes, or fewer only when the stream ends first. */
  async read(length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    for await (const part of this.pieces(length)) {
      parts.push(Buffer.from(part));
      have += part.length;
    }
    return Buffer.concat(parts, have);
  }

  /** The next `length` bytes as they arrive, without holding them all. */
  async *pieces(length: number): AsyncGenerator<Buffer> {
    let left = length;
    while (left > 0) {
      if (this.pending.length === 0) {
        const next = await this.chunks.next();
        if (next.done) return;
        this.pending = next.value;
      }
      const piece = this.pending.subarray(0, Math.min(left, this.pending.length));
      this.pending = this.pending.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }
}

const text = (block: Buffer, start: number, length: number) => {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
};

/** A numeric field: octal text, or base-256 when its first byte has the high bit set (large sizes). */
function numeric(block: Buffer, start: number, length: number): number {
  const field = block.subarray(start, start + length);
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    return value;
  }
  const digits = text(block, start, length).trim();
  return digits === '' ? 0 : Number.parseInt(digits, 8);
}

/** The `path` and `size` records of a pax extended header (`<length> <key>=<value>\n` each). */
function paxRecords(data: Buffer): { path?: string; size?: number } {
  const records: { path?: string; size?: number } = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number.parseInt(data.subarray(offset, space).toString('ascii'), 10);
    if (!Number.isInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === 'path') records.path = value;
    if (key === 'size') records.size = Number(value);
    offset += length;
  }
  return records;
}

const truncated = (bundle: string) => new VerificationError(`${bundle} is cut short (not a complete tar.gz bundle)`);

/**
 * Reads the tar.gz at `file`, calling `onEntry` for every entry with a function that writes the
 * entry's content to a file (created owner-only, `wx`); an entry whose content is not written is
 * skipped. A damaged or cut-short bundle is a VerificationError (exit 3).
 */
export async function readTarGz(
  file: string,
  onEntry: (entry: TarEntry, writeTo: (target: string) => Promise<void>) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const name = file;
  const gunzip = createGunzip();
  // A gzip error surfaces through the reads below, as the iterator's rejection.
  const raw = createReadStream(file);
  raw.on('error', (error) => gunzip.destroy(error));
  const source = raw.pipe(gunzip);
  const reader = new ByteReader(source);
  let longName: string | undefined;
  let pax: { path?: string; size?: number } = {};
  try {
    for (;;) {
      signal?.throwIfAborted();
      const header = await reader.read(BLOCK);
      if (header.length < BLOCK) throw truncated(name);
      if (header.every((byte) => byte === 0)) return;
      let size = numeric(header, 124, 12);
      const flag = String.fromCharCode(header[156] ?? 0);
      const prefix = header.subarray(257, 262).toString('ascii') === 'ustar' ? text(header, 345, 155) : '';
      let entryName = prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (flag === 'x' || flag === 'L' || flag === 'g') {
        const data = await reader.read(padded);
        if (data.length < padded) throw truncated(name);
        if (flag === 'x') pax = paxRecords(data.subarray(0, size));
        if (flag === 'L') longName = text(data, 0, size);
        continue;
      }
      entryName = pax.path ?? longName ?? entryName;
      size = pax.size ?? size;
      pax = {};
      longName = undefined;
      const type = flag === '0' || flag === '\0' || flag === '7' ? 'file' : flag === '5' ? 'directory' : 'other';
      let consumed = false;
      const writeTo = async (target: string) => {
        consumed = true;
        const out = createWriteStream(target, { flags: 'wx', mode: 0o600 });
        let written = 0;
        try {
          for await (const piece of reader.pieces(size)) {
            written += piece.length;
            if (!out.write(piece)) await once(out, 'drain');
          }
          if (written < size) throw truncated(name);
        } finally {
          out.end();
          await once(out, 'close');
        }
      };
      await onEntry({ name: entryName, type, size: type === 'file' ? size : 0 }, writeTo);
      if (!consumed) {
        let skipped = 0;
        for await (const piece of reader.pieces(size)) skipped += piece.length;
        if (skipped < size) throw truncated(name);
      }
      const padding = Math.ceil(size / BLOCK) * BLOCK - size;
      if (padding && (await reader.read(padding)).length < padding) throw truncated(name);
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('Z_')) {
      throw new VerificationError(`${name} is not a readable tar.gz bundle (${(error as Error).message})`);
    }
    throw error;
  } finally {
    raw.destroy();
    source.destroy();
  }
}
