import { statfs } from 'node:fs/promises';
import type { ChalkInstance } from 'chalk';
import type pg from 'pg';
import { formatVersion } from '@lms/core/essentials';
import { type BackupManifest } from './archive/manifest.js';
import { derivedDatabaseName, type DatabaseFacts, type SessionInfo } from '../postgres/admin.js';
import { formatBytes } from '../lib/progress.js';
import { type RestoreTarget } from './restore-engine.js';
import { type PreparedArchive } from './archive/verify.js';
import { databaseStamp, defaultJobs } from './stamp.js';

/**
 * `restore --plan`: what a restore would do — the backup's contents, the target, its sessions,
 * free disk and version compatibility, and the steps — without changing anything.
 */

export interface RestorePlan {
  plan: true;
  backup: {
    file: string;
    takenAt: string;
    sizeBytes: number;
    encrypted: boolean;
    database: string;
    serverVersion: string;
    pgDumpVersion: string;
    migration: number | null;
    tables: number | null;
    rows: number | null;
  };
  archive: { entries: number; byType: Record<string, number> };
  target: {
    database: string;
    host: string;
    port: number;
    exists: boolean;
    sizeBytes: number | null;
    owner: string | null;
    serverVersion: string;
  };
  sessions: Array<{ applicationName: string; user: string; pid: number }>;
  disk: { neededBytes: number; freeBytes: number | null; where: string | null };
  compatibility: string[];
  steps: string[];
}

export async function serverFacts(client: pg.Client): Promise<{ version: string; major: number; superuser: boolean }> {
  const { rows } = await client.query<{ version: string; num: string; superuser: string }>(
    `SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
            current_setting('is_superuser') AS superuser`,
  );
  const row = rows[0]!;
  return {
    version: row.version.split(' ')[0]!,
    major: Math.floor(Number(row.num) / 10000),
    superuser: row.superuser === 'on',
  };
}

/** Free space where the server keeps its data, when the server runs on this machine and says where. */
export async function freeDiskOf(
  client: pg.Client,
  host: string,
): Promise<{ freeBytes: number | null; where: string | null }> {
  const local = host.startsWith('/') || ['localhost', '127.0.0.1', '::1'].includes(host);
  if (!local) return { freeBytes: null, where: null };
  try {
    const { rows } = await client.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
    const dir = rows[0]!.dir;
    const info = await statfs(dir);
    return { freeBytes: info.bavail * info.bsize, where: dir };
  } catch {
    return { freeBytes: null, where: null };
  }
}

export function compatibilityNotes(manifest: BackupManifest, serverMajor: number, pgRestoreMajor: number): string[] {
  const notes: string[] = [];
  const sourceMajor = Math.floor(manifest.server.versionNum / 10000);
  const dumpMajor = Number(manifest.pgDump.version.split('.')[0]);
  notes.push(
    pgRestoreMajor >= dumpMajor
      ? `pg_restore ${pgRestoreMajor} reads archives of pg_dump ${manifest.pgDump.version}`
      : `pg_restore ${pgRestoreMajor} is older than the pg_dump ${manifest.pgDump.version} that wrote the backup`,
  );
  notes.push(
    serverMajor >= sourceMajor
      ? `target server ${serverMajor} ≥ source server ${manifest.server.version}`
      : `target server ${serverMajor} is older than the source ${manifest.server.version}: the restore may fail on newer syntax`,
  );
  return notes;
}

export function buildPlan(
  archive: PreparedArchive,
  target: RestoreTarget,
  existing: DatabaseFacts | null,
  sessions: SessionInfo[],
  server: { version: string; major: number },
  pgRestoreMajor: number,
  disk: { freeBytes: number | null; where: string | null },
  options: { jobs?: number; forceDisconnect?: boolean; dropPrevious?: boolean },
): RestorePlan {
  const { manifest } = archive;
  const rows = manifest.tables ? Object.values(manifest.tables).reduce((a, b) => a + b, 0) : null;
  const steps = [
    `verify ${manifest.file}: manifest signature, sha256, ${manifest.encryption ? 'decryption, ' : ''}archive listing (done)`,
    `create database ${derivedDatabaseName(target.name, `_restoring_${databaseStamp()}`)} beside ${target.name}`,
    `pg_restore --exit-on-error --no-owner --jobs ${options.jobs ?? defaultJobs()} into it`,
    manifest.tables
      ? `check ${Object.keys(manifest.tables).length} tables' row counts and the migration version`
      : 'check the migration version (the backup has no row counts)',
    existing
      ? `rename ${target.name} → ${target.name}_pre_restore_<time> and the restored database → ${target.name}, in one transaction`
      : `rename the restored database → ${target.name}`,
  ];
  if (sessions.length)
    steps.splice(
      4,
      0,
      options.forceDisconnect
        ? `terminate ${sessions.length} session(s)`
        : `refuse: ${sessions.length} session(s) connected (needs --force-disconnect)`,
    );
  if (existing)
    steps.push(
      options.dropPrevious ? 'drop the previous database' : 'keep the previous database until `lmsctl restore cleanup`',
    );
  return {
    plan: true,
    backup: {
      file: archive.dumpPath,
      takenAt: manifest.finishedAt,
      sizeBytes: manifest.sizeBytes,
      encrypted: Boolean(manifest.encryption),
      database: manifest.database.name,
      serverVersion: manifest.server.version,
      pgDumpVersion: manifest.pgDump.version,
      migration: manifest.migration?.version ?? null,
      tables: manifest.tables ? Object.keys(manifest.tables).length : null,
      rows,
    },
    archive: { entries: archive.listing.entries, byType: archive.listing.byType },
    target: {
      database: target.name,
      host: target.host,
      port: target.port,
      exists: Boolean(existing),
      sizeBytes: existing?.sizeBytes ?? null,
      owner: existing?.owner ?? null,
      serverVersion: server.version,
    },
    sessions: sessions.map((session) => ({
      applicationName: session.applicationName,
      user: session.user,
      pid: session.pid,
    })),
    disk: { neededBytes: manifest.database.sizeBytes, freeBytes: disk.freeBytes, where: disk.where },
    compatibility: compatibilityNotes(manifest, server.major, pgRestoreMajor),
    steps,
  };
}

export function renderPlan(plan: RestorePlan, style: ChalkInstance): string {
  const b = plan.backup;
  const t = plan.target;
  const types = Object.entries(plan.archive.byType)
    .sort(([, a], [, c]) => c - a)
    .map(([type, count]) => `${count} ${type}`)
    .join(', ');
  const disk =
    plan.disk.freeBytes === null
      ? `needs about ${formatBytes(plan.disk.neededBytes)} (free space on the server unknown)`
      : `needs about ${formatBytes(plan.disk.neededBytes)}, ${formatBytes(plan.disk.freeBytes)} free in ${plan.disk.where}` +
        (plan.disk.freeBytes < plan.disk.neededBytes * 1.2 ? style.red(' — not enough room') : '');
  return [
    style.bold('restore plan (nothing was changed)'),
    `backup   ${b.file}`,
    `         taken ${b.takenAt} from ${b.database} (PostgreSQL ${b.serverVersion}, pg_dump ${b.pgDumpVersion}), ${formatBytes(b.sizeBytes)}${b.encrypted ? ', encrypted' : ''}`,
    `         ${b.tables === null ? 'no row counts' : `${b.tables} tables, ${b.rows} rows`}, migration ${b.migration === null ? 'none' : formatVersion(b.migration)}`,
    `archive  ${plan.archive.entries} entries: ${types}`,
    `target   ${t.database} on ${t.host}:${t.port} (PostgreSQL ${t.serverVersion}) — ${t.exists ? `exists, ${formatBytes(t.sizeBytes ?? 0)}, owner ${t.owner}` : 'does not exist yet'}`,
    `sessions ${plan.sessions.length === 0 ? 'none' : plan.sessions.map((s) => `${s.applicationName || 'unnamed'} (${s.user}, pid ${s.pid})`).join(', ')}`,
    `disk     ${disk}`,
    ...plan.compatibility.map((note, index) => `${index === 0 ? 'versions ' : '         '}${note}`),
    '',
    ...plan.steps.map((step, index) => `${index + 1}. ${step}`),
  ].join('\n');
}
