import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VerificationError } from '@lms/core/basics';
import { WrongKeyError } from './crypto.js';
import { partialPathOf } from './partial-files.js';
import type { ArchiveKind } from './store.js';

/**
 * The manifest written beside every dump (`lms_….dump.json`): what the dump holds and how to
 * check it. It is signed so that an edit is noticed: with an HMAC keyed from the backup key
 * whenever LMS_BACKUP_KEY_FILE is set, encrypted or not (an attacker without the key cannot
 * re-sign), otherwise with a plain digest that catches corruption and careless edits.
 */
export const MANIFEST_FORMAT = 'lmsctl-backup-manifest';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** One file of a directory backup: a plain name (no folders, nothing that climbs out), its checksum and size. */
const archiveFile = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  sha256: sha256Hex,
  sizeBytes: z.number().int().nonnegative(),
});

const manifestBody = z.object({
  format: z.literal(MANIFEST_FORMAT),
  /** 1: a custom-format file; 2: may describe a directory backup (older lmsctl never lists those). */
  formatVersion: z.union([z.literal(1), z.literal(2)]),
  file: z.string(),
  /** How pg_dump wrote the backup; absent (custom) in manifests written before directory backups. */
  archive: z.enum(['custom', 'directory']).optional(),
  /**
   * A directory backup's files, each with the checksum and size of the bytes stored (encrypted,
   * when the backup is); `sha256` is then the checksum over this list (setChecksum).
   */
  files: z.array(archiveFile).optional(),
  /** pg_dump --jobs of a directory backup. */
  jobs: z.number().int().positive().optional(),
  sha256: sha256Hex,
  sizeBytes: z.number().int().nonnegative(),
  encryption: z.object({ algorithm: z.string(), keyId: z.string(), chunkSize: z.number().int().positive() }).nullable(),
  compression: z.string().nullable(),
  /**
   * The source database. `oid` and `systemIdentifier` (pg_control_system()) identify it beyond
   * its name and address; manifests written before lmsctl recorded them lack both.
   */
  database: z.object({
    name: z.string(),
    host: z.string(),
    port: z.number().int(),
    oid: z.number().int().optional(),
    systemIdentifier: z.string().regex(/^\d+$/).optional(),
    sizeBytes: z.number().int().nonnegative(),
  }),
  server: z.object({ version: z.string(), versionNum: z.number().int() }),
  pgDump: z.object({ version: z.string() }),
  migration: z.object({ version: z.number().int(), name: z.string() }).nullable(),
  /** Row count of every table inside the dump's snapshot; null with --no-counts. */
  tables: z.record(z.string(), z.number().int().nonnegative()).nullable(),
  startedAt: z.string(),
  finishedAt: z.string(),
  durationMs: z.number().nonnegative(),
  lmsctl: z.object({ version: z.string() }),
  /**
   * Set on the manifest of a dump lmsctl did not make (`backup adopt`): when it was adopted and
   * how its contents were established (deep read, scratch restore, counts). Absent otherwise.
   */
  adopted: z.object({ at: z.string(), how: z.string(), lmsctl: z.string() }).optional(),
});

const signatureSchema = z.object({
  algorithm: z.enum(['hmac-sha256', 'sha256']),
  keyId: z.string().optional(),
  value: z.string().regex(/^[0-9a-f]{64}$/),
});

const manifestSchema = manifestBody.extend({ signature: signatureSchema });

export type ManifestBody = z.infer<typeof manifestBody>;
export type BackupManifest = z.infer<typeof manifestSchema>;
export type ArchiveFile = z.infer<typeof archiveFile>;

/** The kind of archive a manifest describes. */
export function archiveKindOf(manifest: Pick<ManifestBody, 'archive'>): ArchiveKind {
  return manifest.archive ?? 'custom';
}

/**
 * The checksum over a directory backup's files: SHA-256 of the lines `sha256sum` prints for them
 * (`<hex>  <name>`, sorted by name), so `sha256sum -c` can check the same list by hand.
 */
export function setChecksum(files: ReadonlyArray<Pick<ArchiveFile, 'name' | 'sha256'>>): string {
  const lines = [...files]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((file) => `${file.sha256}  ${file.name}\n`)
    .join('');
  return createHash('sha256').update(lines).digest('hex');
}

export interface SigningKey {
  key: Buffer;
  keyId: string;
}

/** JSON with object keys sorted at every level, so the signed bytes do not depend on key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, inner]) => inner !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function manifestMacKey(key: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'lms-manifest-v1', 32));
}

/** Signs a manifest body: HMAC with the backup key when given, else a SHA-256 digest. */
export function signManifest(body: ManifestBody, key?: SigningKey): BackupManifest {
  const bytes = canonicalJson(body);
  const signature = key
    ? {
        algorithm: 'hmac-sha256' as const,
        keyId: key.keyId,
        value: createHmac('sha256', manifestMacKey(key.key)).update(bytes).digest('hex'),
      }
    : { algorithm: 'sha256' as const, value: createHash('sha256').update(bytes).digest('hex') };
  return { ...body, signature };
}

/** Writes the manifest atomically (temporary file, then rename), readable by the owner only. */
export async function writeManifest(file: string, manifest: BackupManifest): Promise<void> {
  const temporary = partialPathOf(file);
  await writeFile(temporary, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(temporary, file);
}

export function manifestPathOf(dumpPath: string): string {
  return `${dumpPath}.json`;
}

/**
 * What every command that needs a manifest says of a dump without one: lmsctl did not make it
 * (or its manifest was lost), and `backup adopt` makes it a backup.
 */
export function noManifestMessage(manifestFile: string): string {
  const dump = path.basename(manifestFile).replace(/\.json$/, '');
  return `${dump} has no manifest (${manifestFile} is missing): it was not made by lmsctl, or its manifest was lost; make it a backup with \`lmsctl backup adopt ${dump}\``;
}

/**
 * The refusal of a manifest that carries only the plain digest where a signature is required
 * (LMS_BACKUP_REQUIRE_SIGNED): exit 3, saying why the digest proves nothing and what to do.
 */
export function unsignedError(file: string): VerificationError {
  return new VerificationError(
    `${file} is not signed with the backup key — its manifest carries a plain sha256, which anyone who can write the backup folder can recompute — and LMS_BACKUP_REQUIRE_SIGNED is on: refusing it ` +
      '(if it is genuine, take a new backup with LMS_BACKUP_KEY_FILE set; if not, remove it)',
  );
}

/**
 * Reads and checks a manifest: shape, then signature. `getKey` is asked for the backup key
 * only when the manifest is HMAC-signed; with `requireSigned` a manifest with only the plain
 * digest is refused. Every problem is a VerificationError (exit 3); one signed with another key
 * than LMS_BACKUP_KEY_FILE's is a WrongKeyError.
 */
export async function readManifest(
  file: string,
  getKey: (keyId: string) => Promise<SigningKey>,
  options: { requireSigned?: boolean } = {},
): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new VerificationError(noManifestMessage(file));
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new VerificationError(`manifest ${file} is not valid JSON`);
  }
  const result = manifestSchema.safeParse(parsed);
  if (!result.success) {
    const first = result.error.issues[0];
    throw new VerificationError(
      `manifest ${file} is not an lmsctl manifest (${first ? `${first.path.join('.')}: ${first.message}` : 'bad shape'})`,
    );
  }
  const manifest = result.data;
  const { signature, ...body } = manifest;
  if (archiveKindOf(body) === 'directory') {
    if (!body.files || body.formatVersion !== 2 || !body.file.endsWith('.dump.d')) {
      throw new VerificationError(`manifest ${file} describes a directory backup without its list of files`);
    }
  } else if (body.files) {
    throw new VerificationError(`manifest ${file} lists files, but describes a single-file backup`);
  }
  // A plain checksum can be recomputed by anyone who can write the folder: an encrypted backup's
  // manifest must carry the key's HMAC, or an older dump could be passed off under this name.
  if (body.encryption && (signature.algorithm !== 'hmac-sha256' || signature.keyId !== body.encryption.keyId)) {
    throw new VerificationError(
      `manifest ${file} describes an encrypted backup but is not signed with its key (it was replaced or edited)`,
    );
  }
  if (options.requireSigned && signature.algorithm !== 'hmac-sha256') {
    throw unsignedError(path.basename(file).replace(/\.json$/, ''));
  }
  let expected: BackupManifest;
  if (signature.algorithm === 'hmac-sha256') {
    const key = await getKey(signature.keyId ?? '');
    if (key.keyId !== signature.keyId) {
      throw new WrongKeyError(signature.keyId ?? '', key.keyId, body.encryption ? 'encrypted' : 'signed');
    }
    expected = signManifest(body, key);
  } else {
    expected = signManifest(body);
  }
  if (expected.signature.value !== signature.value) {
    throw new VerificationError(`manifest ${file} was modified after the backup was written (signature mismatch)`);
  }
  return manifest;
}
