import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { VerificationError } from '@lms/core';
import { WrongKeyError } from './crypto.js';
import { partialPathOf } from './partial-files.js';

/**
 * The manifest written beside every dump (`lms_….dump.json`): what the dump holds and how to
 * check it. It is signed so that an edit is noticed: with an HMAC keyed from the backup key
 * for encrypted backups (an attacker without the key cannot re-sign), otherwise with a plain
 * digest that catches corruption and careless edits.
 */
export const MANIFEST_FORMAT = 'lmsctl-backup-manifest';

const manifestBody = z.object({
  format: z.literal(MANIFEST_FORMAT),
  formatVersion: z.literal(1),
  file: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
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
});

const signatureSchema = z.object({
  algorithm: z.enum(['hmac-sha256', 'sha256']),
  keyId: z.string().optional(),
  value: z.string().regex(/^[0-9a-f]{64}$/),
});

const manifestSchema = manifestBody.extend({ signature: signatureSchema });

export type ManifestBody = z.infer<typeof manifestBody>;
export type BackupManifest = z.infer<typeof manifestSchema>;

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
 * Reads and checks a manifest: shape, then signature. `getKey` is asked for the backup key
 * only when the manifest is HMAC-signed. Every problem is a VerificationError (exit 3).
 */
export async function readManifest(
  file: string,
  getKey: (keyId: string) => Promise<SigningKey>,
): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new VerificationError(`manifest not found: ${file} (a dump without its manifest cannot be verified)`);
    }
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
  // A plain checksum can be recomputed by anyone who can write the folder: an encrypted backup's
  // manifest must carry the key's HMAC, or an older dump could be passed off under this name.
  if (body.encryption && (signature.algorithm !== 'hmac-sha256' || signature.keyId !== body.encryption.keyId)) {
    throw new VerificationError(
      `manifest ${file} describes an encrypted backup but is not signed with its key (it was replaced or edited)`,
    );
  }
  let expected: BackupManifest;
  if (signature.algorithm === 'hmac-sha256') {
    const key = await getKey(signature.keyId ?? '');
    if (key.keyId !== signature.keyId) {
      throw new WrongKeyError(signature.keyId ?? '', key.keyId);
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
