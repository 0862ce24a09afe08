import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import {
  describeIdentity,
  describeSelector,
  identityOfConnection,
  identityOfUrl,
  selects,
  type BackupSelector,
  type DatabaseIdentity,
} from './identity.js';
import { listBackupFiles, readVerification, type ArchiveKind } from './archive/store.js';
import { lastDrillOf, readDrillReports, type DrillReportSummary } from './drill-reports.js';
import { manifestPathOf, unsignedError, type BackupManifest } from './archive/manifest.js';
import { readEncryptionHeader } from './archive/crypto.js';
import { TOC_FILE } from './archive/directory.js';

/**
 * What the backup folder holds, as list, prune, status, check, `migrate --require-backup` and
 * `latest` see it: each backup with the database it came from, its verification and its drills.
 * Manifests are read, not re-verified: whatever relies on a backup verifies it first.
 */

/** The outcome of a backup's last verification, as recorded beside it. */
export type VerificationState = 'verified' | 'failed' | 'unverified';

/** One backup as list, prune, status and `migrate --require-backup` see it. */
export interface BackupInfo {
  file: string;
  path: string;
  startedAt: string;
  ageMs: number;
  /** `custom` (one file) or `directory` (a folder, from `backup --jobs N`). */
  archive: ArchiveKind;
  /** The file's size, or the sum of a directory backup's files. */
  sizeBytes: number;
  /**
   * False for a dump without a manifest (made without lmsctl, or its manifest lost): not a
   * backup until `backup adopt` gives it one.
   */
  complete: boolean;
  encrypted: boolean;
  /** The manifest claims an HMAC of the backup key (checked only when the backup is verified). */
  signed: boolean;
  /** A dump lmsctl did not make, given its manifest by `backup adopt`. */
  adopted: boolean;
  /** The source database, from the manifest; null without one. */
  database: DatabaseIdentity | null;
  migration: number | null;
  tables: number | null;
  rows: number | null;
  /** The last verification passed and was of these exact bytes. */
  verified: boolean;
  verification: VerificationState;
  /** When the last verification ran, whatever it found. */
  verifiedAt: string | null;
  /** What the last verification found (the reason, when it failed). */
  verificationDetail: string | null;
  /** When a deep verification (`verify --deep`: every data block read) of these exact bytes last passed. */
  deepVerifiedAt: string | null;
  lastDrill: { verdict: DrillReportSummary['verdict']; at: string; report: string } | null;
}

/** The manifest beside a dump as it stands, unverified; null when missing or unreadable. */
export async function readManifestUnchecked(dumpPath: string): Promise<BackupManifest | null> {
  try {
    return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
  } catch {
    return null;
  }
}

function identityOfManifest(manifest: BackupManifest | null): DatabaseIdentity | null {
  if (!manifest?.database) return null;
  const { name, host, port, oid, systemIdentifier } = manifest.database;
  return { name, host, port, ...(oid !== undefined ? { oid } : {}), ...(systemIdentifier ? { systemIdentifier } : {}) };
}

/**
 * The key id in an encrypted backup's own header (of its toc.dat for a directory backup), not
 * the manifest's word for it; null for a plain backup.
 */
export async function storedKeyIdOf(info: Pick<BackupInfo, 'path' | 'archive' | 'encrypted'>): Promise<string | null> {
  if (!info.encrypted) return null;
  const file = info.archive === 'directory' ? path.join(info.path, TOC_FILE) : info.path;
  return (await readEncryptionHeader(file))?.keyId ?? null;
}

/** Everything known about the backups in `dir`, newest first (drills from `drillDir` when given). */
export async function describeBackups(dir: string, drillDir?: string, now = new Date()): Promise<BackupInfo[]> {
  const drills = drillDir === undefined ? [] : await readDrillReports(drillDir);
  const infos: BackupInfo[] = [];
  for (const entry of await listBackupFiles(dir)) {
    const manifest = entry.hasManifest ? await readManifestUnchecked(entry.path) : null;
    const verification = await readVerification(entry.path);
    const drill = lastDrillOf(drills, entry.name, manifest?.sha256);
    const verified = Boolean(
      manifest && verification?.ok && verification.sha256 === manifest.sha256 && manifest.sizeBytes === entry.sizeBytes,
    );
    infos.push({
      file: entry.name,
      path: entry.path,
      startedAt: entry.startedAt.toISOString(),
      ageMs: now.getTime() - new Date(manifest?.finishedAt ?? entry.startedAt).getTime(),
      archive: entry.kind,
      sizeBytes: entry.sizeBytes,
      complete: Boolean(manifest),
      encrypted: Boolean(manifest?.encryption),
      signed: manifest?.signature?.algorithm === 'hmac-sha256',
      adopted: Boolean(manifest?.adopted),
      database: identityOfManifest(manifest),
      migration: manifest?.migration?.version ?? null,
      tables: manifest?.tables ? Object.keys(manifest.tables).length : null,
      rows: manifest?.tables ? Object.values(manifest.tables).reduce((sum, count) => sum + count, 0) : null,
      verified,
      verification: verified ? 'verified' : verification && !verification.ok ? 'failed' : 'unverified',
      verifiedAt: verification?.checkedAt ?? null,
      verificationDetail: verification ? verification.detail : null,
      deepVerifiedAt: verified ? (verification?.deepVerifiedAt ?? null) : null,
      lastDrill: drill ? { verdict: drill.verdict, at: drill.finishedAt, report: drill.path } : null,
    });
  }
  return infos;
}

/** The backups `selector` picks, newest first. */
export function selectBackups(backups: BackupInfo[], selector: BackupSelector): BackupInfo[] {
  return backups.filter((info) => selects(selector, info.database));
}

/**
 * The newest verified backup of the database `selector` picks (`migrate --require-backup`,
 * `check predeploy`); with `requireSigned`, the newest verified and signed one.
 */
export function newestVerifiedBackupOf(
  backups: BackupInfo[],
  selector: BackupSelector,
  options: { requireSigned?: boolean } = {},
): BackupInfo | undefined {
  return selectBackups(backups, selector).find((info) => info.verified && (info.signed || !options.requireSigned));
}

/** "lms on 127.0.0.1:5432 (3), dev on 127.0.0.1:5432 (1)": the sources of the complete backups. */
export function describeSources(backups: BackupInfo[]): string {
  const counts = new Map<string, number>();
  for (const info of backups) {
    if (!info.database) continue;
    const key = describeIdentity(info.database);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([source, count]) => `${source} (${count})`).join(', ');
}

/**
 * `latest` without a database to address (no DATABASE_URL, no --database): fine while the
 * folder holds the backups of one database only; with several, guessing would be the bug this
 * module exists to prevent.
 */
export function soleDatabaseSelector(backups: BackupInfo[], dir: string): BackupSelector {
  const names = [...new Set(backups.flatMap((info) => (info.database ? [info.database.name] : [])))];
  if (names.length <= 1) return { kind: 'all' };
  throw usageError(
    `${dir} holds backups of several databases (${names.join(', ')}): which one is "latest"?`,
    'name it with --database NAME, or set DATABASE_URL to the database you mean',
  );
}

/**
 * Resolves what the user named. `latest` is the newest complete backup of the database the
 * selector picks — with `requireSigned` (LMS_BACKUP_REQUIRE_SIGNED), refused (exit 3) when its
 * manifest is not signed with a key: an unsigned file dropped into the folder must not become
 * "latest". A path is taken relative to the working directory, a bare file name also inside the
 * backup folder.
 */
export async function resolveBackup(
  dir: string,
  spec: string,
  cwd: string,
  selector: BackupSelector,
  options: { requireSigned?: boolean } = {},
): Promise<string> {
  if (spec === 'latest') {
    const everything = await describeBackups(dir);
    const backups = everything.filter((info) => info.complete);
    const newest = selectBackups(backups, selector)[0];
    if (newest && options.requireSigned && !newest.signed) throw unsignedError(`the newest backup, ${newest.file},`);
    if (newest) return newest.path;
    // What `backup list` shows as "not lmsctl backups": named so, never silently passed over.
    const unadopted = everything.filter((info) => !info.complete);
    const adopt = unadopted.length
      ? `; ${unadopted.length} dump(s) in it have no manifest (${unadopted
          .slice(0, 3)
          .map((info) => info.file)
          .join(', ')}${unadopted.length > 3 ? ', …' : ''}): \`lmsctl backup adopt --all\` makes them backups`
      : '';
    if (backups.length === 0) {
      throw usageError(`no backup in ${dir}${adopt}`, 'make one with `lmsctl backup`, or name a file');
    }
    throw usageError(
      `no backup of ${describeSelector(selector)} in ${dir}; it holds backups of ${describeSources(backups)}`,
      'back this database up with `lmsctl backup`, or name the backup you mean (a file, or --from-database / --database NAME)',
    );
  }
  // A trailing separator (shell completion of a directory backup) names the same folder.
  const named = spec.replace(/[/\\]+$/, '') || spec;
  const candidates = [path.resolve(cwd, named)];
  if (!named.includes('/') && !named.includes('\\')) candidates.push(path.join(dir, named));
  for (const candidate of candidates) {
    const info = await stat(candidate).catch(() => null);
    if (info?.isFile()) return candidate;
    if (info?.isDirectory() && (await isDirectoryBackup(candidate))) return candidate;
  }
  throw usageError(`backup not found: ${spec}`, `\`lmsctl backup list\` shows the backups in ${dir}`);
}

/** A folder is a backup when pg_dump wrote it (its toc.dat) or a manifest lies beside it. */
async function isDirectoryBackup(folder: string): Promise<boolean> {
  const present = async (file: string) => (await stat(file).catch(() => null))?.isFile() === true;
  return (await present(path.join(folder, TOC_FILE))) || (await present(manifestPathOf(folder)));
}

/** `--database NAME` / `--all` of the commands that read the backup folder. */
export interface SelectionFlags {
  database?: string;
  all?: boolean;
}

/**
 * The selector of a command that does not connect to PostgreSQL (list, verify, bundle, prune):
 * `--all`, `--database NAME`, else the database at `databaseUrl` matched by name, host and port
 * (callers pass the URL backups are taken through: --database-url, DATABASE_DIRECT_URL, else
 * DATABASE_URL, never a pooler's address); null when nothing is addressed.
 */
export function offlineSelector(databaseUrl: string | undefined, flags: SelectionFlags): BackupSelector | null {
  if (flags.all && flags.database) throw usageError('--all and --database exclude each other', 'pass one of them');
  if (flags.all) return { kind: 'all' };
  if (flags.database) return { kind: 'name', name: flags.database };
  return databaseUrl ? { kind: 'database', database: identityOfUrl(databaseUrl) } : null;
}

/**
 * The identity of the database at `url` as exactly as the server will tell (system identifier
 * and OID), or what the URL says when it does not answer: `status` must still report the
 * backups of a database that is down.
 */
export async function addressedIdentity(url: string, applicationName: string): Promise<DatabaseIdentity> {
  let client: pg.Client | undefined;
  try {
    // Loaded here: verify and list, which import this module, mostly never connect (see @lms/core/basics).
    const { connectClient } = await import('@lms/core/essentials');
    client = await connectClient(url, { applicationName, timeoutMs: 3_000 });
    return await identityOfConnection(client, url);
  } catch {
    return identityOfUrl(url);
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/**
 * What `latest` means for verify and bundle: the newest backup of `--database NAME`, else of
 * the addressed database, else of the only database the folder holds backups of.
 */
export async function latestSelector(
  ctx: Pick<CommandContext, 'sessionDatabase'>,
  dir: string,
  flags: SelectionFlags,
): Promise<BackupSelector> {
  return offlineSelector(ctx.sessionDatabase?.url, flags) ?? soleDatabaseSelector(await describeBackups(dir), dir);
}
