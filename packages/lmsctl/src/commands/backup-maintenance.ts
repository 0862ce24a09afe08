import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { TarArchive } from 'archiver';
import type { ChalkInstance } from 'chalk';
import { VerificationError } from '@lms/core';
import type { CommandContext } from '../context.js';
import { usageError, withPath } from '../errors.js';
import { assertMatchesManifest, checkArchive } from '../lib/archive-check.js';
import { WrongKeyError, type BackupKey } from '../lib/backup-crypto.js';
import {
  describeBackups,
  describeSources,
  offlineSelector,
  readManifestUnchecked,
  resolveBackup,
  selectBackups,
  soleDatabaseSelector,
  type BackupInfo,
  type SelectionFlags,
} from '../lib/backup-catalog.js';
import { describeIdentity, describeSelector, sameDatabase, type BackupSelector } from '../lib/backup-identity.js';
import {
  readVerification,
  verificationPathOf,
  writeVerification,
  type VerificationRecord,
} from '../lib/backup-store.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { readDrillReports } from '../lib/drill-reports.js';
import { formatDuration } from '@lms/core/duration';
import { manifestPathOf, readManifest, type BackupManifest } from '../lib/manifest.js';
import { partialPathOf } from '../lib/partial-files.js';
import { formatBytes } from '../lib/progress.js';
import { table } from '../output.js';
import { backupDirOf, backupKeyOf, toolsOf } from './backup.js';

export function drillDirOf(ctx: CommandContext): string {
  return path.resolve(ctx.cwd, ctx.config.LMS_DRILL_DIR);
}

export interface BackupListResult {
  dir: string;
  /** Whose backups are listed: `lms on 127.0.0.1:5432`, `database lms`, or `any database`. */
  showing: string;
  backups: BackupInfo[];
  /** Backups in the folder that the selection left out (other databases', incomplete ones). */
  hidden: number;
  /** The databases those hidden backups came from, for the footer. */
  hiddenSources: string;
}

/**
 * The backups of the addressed database (DATABASE_URL), of `--database NAME`, or with `--all`
 * (also the default when no database is addressed) every one, newest first.
 */
export async function backupList(
  ctx: CommandContext,
  options: { dir?: string } & SelectionFlags = {},
): Promise<BackupListResult> {
  const dir = backupDirOf(ctx, options.dir);
  const selector = offlineSelector(ctx.databaseUrl, options) ?? { kind: 'all' as const };
  const all = await describeBackups(dir, drillDirOf(ctx));
  const backups = selectBackups(all, selector);
  const hidden = all.filter((info) => !backups.includes(info));
  return {
    dir,
    showing: describeSelector(selector),
    backups,
    hidden: hidden.length,
    hiddenSources: describeSources(hidden),
  };
}

function verificationCell(info: BackupInfo, style: ChalkInstance): string {
  if (info.verification === 'verified') return style.green('yes');
  if (info.verification === 'failed') return style.red('FAILED');
  return style.yellow('no');
}

export function renderBackupList(result: BackupListResult, style: ChalkInstance): string {
  const otherwise = result.hidden
    ? `\n${style.dim(`${result.hidden} more backup(s) of other databases${result.hiddenSources ? ` (${result.hiddenSources})` : ''}: --all lists them`)}`
    : '';
  if (result.backups.length === 0) return `no backups of ${result.showing} in ${result.dir}${otherwise}`;
  const rows = result.backups.map((info) => [
    info.file,
    formatBytes(info.sizeBytes),
    `${formatDuration(info.ageMs)} ago`,
    info.database
      ? `${info.database.name}@${info.database.host}:${info.database.port}`
      : style.red('incomplete: no manifest'),
    info.encrypted ? 'yes' : 'no',
    verificationCell(info, style),
    info.lastDrill
      ? (info.lastDrill.verdict === 'pass' ? style.green : style.red)(
          `${info.lastDrill.verdict} ${info.lastDrill.at.slice(0, 10)}`,
        )
      : '—',
  ]);
  const failures = result.backups
    .filter((info) => info.verification === 'failed')
    .map(
      (info) =>
        `${style.red('verification failed')} ${info.file} (${info.verifiedAt ?? 'unknown time'}): ${info.verificationDetail}`,
    );
  const count = `${result.backups.length} backup${result.backups.length === 1 ? '' : 's'} of ${result.showing} in ${result.dir}`;
  return [
    table(['BACKUP', 'SIZE', 'AGE', 'DATABASE', 'ENCRYPTED', 'VERIFIED', 'LAST DRILL'], rows, style),
    ...(failures.length ? ['', ...failures] : []),
    '',
    `${style.dim(count)}${otherwise}`,
  ].join('\n');
}

/**
 * What `latest` means for verify and bundle: the newest backup of `--database NAME`, else of
 * the addressed database, else of the only database the folder holds backups of.
 */
async function latestSelector(ctx: CommandContext, dir: string, flags: SelectionFlags): Promise<BackupSelector> {
  return offlineSelector(ctx.databaseUrl, flags) ?? soleDatabaseSelector(await describeBackups(dir), dir);
}

export interface VerifiedBackup {
  path: string;
  manifest: BackupManifest;
  key: BackupKey | undefined;
  /** TOC entries pg_restore --list read. */
  entries: number;
  /** PostgreSQL version of the pg_dump that wrote it. */
  dumpedBy: string | null;
}

/**
 * The full check of one backup, before anything relies on it: manifest signature, decryption
 * of every chunk, checksum and size against the manifest, and a readable archive listing.
 * Records the outcome beside the dump; throws VerificationError (exit 3) on any mismatch.
 */
export async function verifyBackupFile(
  ctx: CommandContext,
  dumpPath: string,
  dir: string,
  signal?: AbortSignal,
): Promise<VerifiedBackup> {
  let key: BackupKey | undefined;
  const getKey = async () => (key ??= await backupKeyOf(ctx, dir, 'this backup'));
  const record = async (ok: boolean, sha256: string | null, detail: string) =>
    writeVerification(dumpPath, { checkedAt: new Date().toISOString(), ok, sha256, detail }).catch(() => undefined);
  try {
    const manifest = await readManifest(manifestPathOf(dumpPath), getKey);
    if (manifest.file !== path.basename(dumpPath)) {
      throw new VerificationError(`manifest names ${manifest.file}, not ${path.basename(dumpPath)}`);
    }
    if (manifest.encryption) await getKey();
    const check = await checkArchive(dumpPath, { ...toolsOf(ctx), key, signal });
    assertMatchesManifest(check, manifest, path.basename(dumpPath));
    await record(true, check.sha256, `checksum, manifest and ${check.listing.entries} archive entries verified`);
    return { path: dumpPath, manifest, key, entries: check.listing.entries, dumpedBy: check.listing.dumpedBy };
  } catch (error) {
    if (error instanceof VerificationError && !(error instanceof WrongKeyError))
      await record(false, null, error.message);
    throw error;
  }
}

export interface BackupVerifyResult {
  file: string;
  ok: true;
  sha256: string;
  sizeBytes: number;
  encrypted: boolean;
  entries: number;
  tables: number | null;
}

export async function backupVerify(
  ctx: CommandContext,
  spec: string,
  options: { dir?: string; database?: string } = {},
): Promise<BackupVerifyResult> {
  const dir = backupDirOf(ctx, options.dir);
  const dumpPath = await resolveBackup(dir, spec, ctx.cwd, await latestSelector(ctx, dir, options));
  const verified = await verifyBackupFile(ctx, dumpPath, dir);
  return {
    file: dumpPath,
    ok: true,
    sha256: verified.manifest.sha256,
    sizeBytes: verified.manifest.sizeBytes,
    encrypted: Boolean(verified.manifest.encryption),
    entries: verified.entries,
    tables: verified.manifest.tables ? Object.keys(verified.manifest.tables).length : null,
  };
}

export function renderBackupVerify(result: BackupVerifyResult, style: ChalkInstance): string {
  return `${style.green('verified')} ${result.file}: sha256 matches the manifest, ${result.entries} archive entries readable${result.encrypted ? ', every encrypted chunk authenticated' : ''}`;
}

export interface BackupPruneOptions extends SelectionFlags {
  dir?: string;
  keep: number;
  keepDays?: number;
  dryRun?: boolean;
}

export interface BackupPruneResult {
  dir: string;
  /** Whose backups retention applied to. */
  showing: string;
  dryRun: boolean;
  kept: Array<{ file: string; database: string | null; reason: string }>;
  deleted: Array<{ file: string; database: string | null; sizeBytes: number }>;
  freedBytes: number;
}

/** The backups of each source database, newest first within each; incomplete ones form their own group. */
function groupBySource(backups: BackupInfo[]): BackupInfo[][] {
  const groups: BackupInfo[][] = [];
  for (const info of backups) {
    const group = groups.find((candidate) => {
      const first = candidate[0]!.database;
      return info.database && first ? sameDatabase(info.database, first) : info.database === first;
    });
    if (group) group.push(info);
    else groups.push([info]);
  }
  return groups;
}

/**
 * Retention, for each source database on its own (one database's hourly backups must not push
 * another's out of the folder): keeps the `keep` newest complete backups and any younger than
 * `keepDays`, and never deletes the newest backup nor the newest one that passed a drill.
 * Applies to the addressed database's backups, `--database NAME`'s, or with `--all` every
 * database's (and incomplete dumps). Asks before deleting.
 */
export async function backupPrune(ctx: CommandContext, options: BackupPruneOptions): Promise<BackupPruneResult> {
  if (!Number.isInteger(options.keep) || options.keep < 1) throw usageError('--keep must be at least 1');
  const dir = backupDirOf(ctx, options.dir);
  const all = await describeBackups(dir, drillDirOf(ctx));
  const selector = offlineSelector(ctx.databaseUrl, options) ?? soleDatabaseSelector(all, dir);
  const backups = selectBackups(all, selector);
  const reasons = new Map<string, string>();
  const keepReason = (file: string, reason: string) => {
    if (!reasons.has(file)) reasons.set(file, reason);
  };
  for (const group of groupBySource(backups)) {
    const complete = group.filter((info) => info.complete);
    if (group[0]) keepReason(group[0].file, 'newest backup');
    complete
      .slice(0, options.keep)
      .forEach((info, index) => keepReason(info.file, `among the ${options.keep} newest (#${index + 1})`));
    const drilled = complete.find((info) => info.lastDrill?.verdict === 'pass');
    if (drilled) keepReason(drilled.file, 'newest backup that passed a drill');
    if (options.keepDays !== undefined) {
      const limit = options.keepDays * 86_400_000;
      for (const info of group) if (info.ageMs < limit) keepReason(info.file, `younger than ${options.keepDays} days`);
    }
  }
  const sourceOf = (info: BackupInfo) => (info.database ? describeIdentity(info.database) : null);
  const doomed = backups.filter((info) => !reasons.has(info.file));
  const result: BackupPruneResult = {
    dir,
    showing: describeSelector(selector),
    dryRun: options.dryRun ?? false,
    kept: backups
      .filter((info) => reasons.has(info.file))
      .map((info) => ({ file: info.file, database: sourceOf(info), reason: reasons.get(info.file)! })),
    deleted: doomed.map((info) => ({ file: info.file, database: sourceOf(info), sizeBytes: info.sizeBytes })),
    freedBytes: doomed.reduce((sum, info) => sum + info.sizeBytes, 0),
  };
  if (doomed.length === 0 || options.dryRun) return result;

  ctx.out.info(
    `this deletes ${doomed.length} backup(s) of ${result.showing} from ${dir} (${formatBytes(result.freedBytes)}), with their manifests:\n` +
      doomed.map((info) => `  ${info.file} (${sourceOf(info) ?? 'no manifest'})`).join('\n'),
  );
  await confirmOrRefuse(`Delete ${doomed.length} backup(s)?`, {
    yes: ctx.yes,
    action: `delete ${doomed.length} backup(s)`,
  });
  for (const info of doomed) {
    // The manifest goes first: a dump without one is never taken for a usable backup.
    await unlink(manifestPathOf(info.path)).catch(() => undefined);
    await unlink(verificationPathOf(info.path)).catch(() => undefined);
    await unlink(info.path);
  }
  return result;
}

export function renderBackupPrune(result: BackupPruneResult, style: ChalkInstance): string {
  const lines = result.kept.map((entry) => `${style.green('keep  ')} ${entry.file} ${style.dim(`(${entry.reason})`)}`);
  const verb = result.dryRun ? 'would delete' : 'deleted';
  lines.push(
    ...result.deleted.map(
      (entry) => `${style.red(verb.padEnd(6))} ${entry.file} ${style.dim(formatBytes(entry.sizeBytes))}`,
    ),
  );
  lines.push(
    result.deleted.length === 0
      ? 'nothing to delete'
      : `${verb} ${result.deleted.length} backup(s), ${formatBytes(result.freedBytes)}${result.dryRun ? ' (dry run: nothing was deleted)' : ''}`,
  );
  return lines.join('\n');
}

export interface BackupBundleResult {
  bundle: string;
  sizeBytes: number;
  files: string[];
}

/** Packs a dump, its manifest, its verification and its drill reports into one tar.gz. */
export async function backupBundle(
  ctx: CommandContext,
  spec: string,
  options: { dir?: string; out: string; database?: string },
): Promise<BackupBundleResult> {
  const dir = backupDirOf(ctx, options.dir);
  const dumpPath = await resolveBackup(dir, spec, ctx.cwd, await latestSelector(ctx, dir, options));
  const manifest = await readManifestUnchecked(dumpPath);
  if (!manifest) throw new VerificationError(`${path.basename(dumpPath)} has no manifest; bundle a complete backup`);
  const out = path.resolve(ctx.cwd, options.out);
  if (
    await stat(out).then(
      () => true,
      () => false,
    )
  ) {
    throw usageError(`${out} already exists`, 'choose another --out path or remove the file first');
  }
  const members: Array<{ file: string; name: string }> = [
    { file: dumpPath, name: path.basename(dumpPath) },
    { file: manifestPathOf(dumpPath), name: path.basename(manifestPathOf(dumpPath)) },
  ];
  const verification: VerificationRecord | null = await readVerification(dumpPath);
  if (verification)
    members.push({ file: verificationPathOf(dumpPath), name: path.basename(verificationPathOf(dumpPath)) });
  for (const report of await readDrillReports(drillDirOf(ctx))) {
    if (report.backup.file !== manifest.file || report.backup.sha256 !== manifest.sha256) continue;
    members.push({ file: report.path, name: `drills/${path.basename(report.path)}` });
    const markdown = report.path.replace(/\.json$/, '.md');
    if (
      await stat(markdown).then(
        () => true,
        () => false,
      )
    )
      members.push({ file: markdown, name: `drills/${path.basename(markdown)}` });
  }
  const temporary = partialPathOf(out);
  const archive = new TarArchive({ gzip: true, gzipOptions: { level: 6 } });
  for (const member of members) archive.append(createReadStream(member.file), { name: member.name, mode: 0o600 });
  const written = pipeline(archive, createWriteStream(temporary, { mode: 0o600, flags: 'wx' }));
  try {
    // Together: a failed finalize must not leave the write's rejection unobserved.
    await Promise.all([archive.finalize(), written]);
    await rename(temporary, out);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    // A full disk fails the stream's write, which names no file.
    throw withPath(error, out);
  }
  return { bundle: out, sizeBytes: (await stat(out)).size, files: members.map((member) => member.name) };
}

export function renderBackupBundle(result: BackupBundleResult, style: ChalkInstance): string {
  return `${style.green('bundle written')} ${result.bundle} (${formatBytes(result.sizeBytes)}): ${result.files.join(', ')}`;
}
