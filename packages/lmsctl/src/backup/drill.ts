import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import {
  connectClient,
  describePostgresUrl,
  errorMessage,
  formatVersion,
  VerificationError,
  withDatabase,
} from '@lms/core/essentials';
import { formatDuration } from '@lms/core/duration';
import { requireDirectDatabaseUrl, type CommandContext } from '../context.js';
import { addressedIdentity, resolveBackup } from './inventory.js';
import type { BackupSelector, DatabaseIdentity } from './identity.js';
import { readDrillReports, routineDrillsOf } from './drill-reports.js';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import { createDatabase, dropDatabase, dropAbandonedDatabases, markerFor, setComment } from '../postgres/admin.js';
import { formatBytes } from '../lib/progress.js';
import { lmsctlVersion } from '../version.js';
import { backupDirOf, drillDirOf, publishMetrics } from './context.js';
import { listTables } from './catalog.js';
import { prepareArchive } from './archive/verify.js';
import { runPgRestore } from './restore-engine.js';
import { integrityChecks, type DrillCheck, type DrillVerdict } from './drill-report.js';
import { databaseStamp, defaultJobs, fileStamp } from './stamp.js';
import { compareWithManifest } from './manifest-check.js';
import { isBundle, unpackBundle, type UnpackedBundle } from './bundle-source.js';

/**
 * The restore drill: verify a backup, restore it into a scratch database, check it against its
 * manifest and the application's invariants, weigh it against the RTO and RPO, report, and always
 * drop the scratch database.
 */

export interface DrillOptions {
  /** Backup file, or `latest` (default): the newest backup of the database drilled. */
  backup?: string;
  /**
   * Drill the backups of this database (by name, from any server) instead of DATABASE_URL's:
   * e.g. on a drill server that holds no copy of the application database.
   */
  fromDatabase?: string;
  dir?: string;
  /** Recovery time objective in milliseconds, `--rto` (default LMS_DRILL_RTO). */
  rto?: number;
  /** Recovery point objective in milliseconds, `--rpo` (default LMS_DRILL_RPO). */
  rpo?: number;
  /** A missed objective fails the drill instead of warning. */
  strict?: boolean;
  keepScratch?: boolean;
  jobs?: number;
  /** Aborts the drill; without it, SIGINT/SIGTERM do. */
  signal?: AbortSignal;
}

export interface DrillReport {
  format: 'lmsctl-drill-report';
  formatVersion: 1;
  verdict: DrillVerdict;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  backup: {
    file: string;
    path: string;
    sha256: string;
    takenAt: string | null;
    ageMs: number | null;
    sizeBytes: number;
    encrypted: boolean;
    database: string | null;
    /** The source database's identity, from the backup's manifest. */
    source: DatabaseIdentity | null;
    /** The off-site bundle the backup was unpacked from, when the drill was given one. */
    bundle?: string;
  };
  /**
   * A drill of the newest backup (as scheduled) rather than of a named file: only routine drills
   * feed the drill metrics and the drill line of `status` and `check`.
   */
  routine: boolean;
  scratch: { database: string; host: string; port: number; created: boolean; kept: boolean };
  restore: { verifyMs: number; restoreMs: number; checkMs: number; recoveryMs: number; jobs: number } | null;
  objectives: { rtoMs: number; rpoMs: number; strict: boolean };
  checks: DrillCheck[];
  rowsChecked: number;
  warnings: string[];
  /** Why the drill could not run (verdict `error`). */
  error: string | null;
  lmsctl: { version: string };
}

export interface DrillResult {
  report: DrillReport;
  reportPath: string;
  markdownPath: string;
}

/**
 * Proves a backup restores: verifies it, restores it into a scratch database, checks every
 * table's rows, the migration version, every foreign key and a few application queries,
 * weighs restore time and backup age against the RTO and RPO, writes a JSON and a Markdown
 * report and the Prometheus metrics, and always drops the scratch database.
 */
export async function drill(ctx: CommandContext, options: DrillOptions = {}): Promise<DrillResult> {
  const url = await requireDirectDatabaseUrl(ctx, 'drill');
  const dir = backupDirOf(ctx, options.dir);
  const spec = options.backup ?? 'latest';
  const routine = spec === 'latest';
  const addressed = await addressedIdentity(url, 'lmsctl drill');
  const selector: BackupSelector = options.fromDatabase
    ? { kind: 'name', name: options.fromDatabase }
    : { kind: 'database', database: addressed };
  // An off-site bundle as it is: its backup unpacked into LMS_WORK_DIR, removed after the drill.
  const bundle = isBundle(spec)
    ? await unpackBundle(ctx, await resolveBackup(dir, spec, ctx.cwd, { kind: 'all' }), dir, options.signal)
    : undefined;
  try {
    return await drillBackup(ctx, options, { url, dir, spec, routine, addressed, selector, bundle });
  } finally {
    await bundle?.dispose();
  }
}

async function drillBackup(
  ctx: CommandContext,
  options: DrillOptions,
  context: {
    url: string;
    dir: string;
    spec: string;
    routine: boolean;
    addressed: DatabaseIdentity;
    selector: BackupSelector;
    bundle: UnpackedBundle | undefined;
  },
): Promise<DrillResult> {
  const { url, dir, spec, routine, addressed, selector, bundle } = context;
  const dumpPath = await resolveBackup(dir, bundle?.dumpPath ?? spec, ctx.cwd, selector, {
    requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED,
  });
  const jobs = options.jobs ?? defaultJobs();
  const objectives = {
    rtoMs: options.rto ?? ctx.config.LMS_DRILL_RTO,
    rpoMs: options.rpo ?? ctx.config.LMS_DRILL_RPO,
    strict: options.strict ?? false,
  };
  const { host, port } = describePostgresUrl(url);
  const scratch = `lms_drill_${databaseStamp()}`;
  const started = new Date();
  const report: DrillReport = {
    format: 'lmsctl-drill-report',
    formatVersion: 1,
    verdict: 'error',
    startedAt: started.toISOString(),
    finishedAt: started.toISOString(),
    durationMs: 0,
    backup: {
      file: path.basename(dumpPath),
      path: dumpPath,
      sha256: '',
      takenAt: null,
      ageMs: null,
      sizeBytes: 0,
      encrypted: false,
      database: null,
      source: null,
      ...(bundle ? { bundle: bundle.bundle } : {}),
    },
    routine,
    scratch: { database: scratch, host, port, created: false, kept: false },
    restore: null,
    objectives,
    checks: [],
    rowsChecked: 0,
    warnings: [],
    error: null,
    lmsctl: { version: lmsctlVersion },
  };

  await withInterrupt(async (signal) => {
    let admin: pg.Client | null = null;
    let created = false;
    try {
      const verifyStarted = Date.now();
      const archive = await prepareArchive(ctx, dumpPath, dir, signal).catch((error: unknown) => {
        if (error instanceof VerificationError) report.checks.push(verifyCheck(false, error.message));
        throw error;
      });
      const { manifest } = archive;
      Object.assign(report.backup, {
        sha256: manifest.sha256,
        takenAt: manifest.finishedAt,
        ageMs: started.getTime() - new Date(manifest.finishedAt).getTime(),
        sizeBytes: manifest.sizeBytes,
        encrypted: Boolean(manifest.encryption),
        database: manifest.database.name,
        source: {
          name: manifest.database.name,
          host: manifest.database.host,
          port: manifest.database.port,
          ...(manifest.database.oid !== undefined ? { oid: manifest.database.oid } : {}),
          ...(manifest.database.systemIdentifier ? { systemIdentifier: manifest.database.systemIdentifier } : {}),
        },
      });
      try {
        // A drill proves a good backup: finish the checksum before building anything.
        await archive.checksum.catch((error: unknown) => {
          if (error instanceof VerificationError) report.checks.push(verifyCheck(false, error.message));
          throw error;
        });
        report.checks.push(
          verifyCheck(true, `sha256, manifest signature and ${archive.listing.entries} archive entries`),
        );
        const verifyMs = Date.now() - verifyStarted;

        admin = await connectClient(withDatabase(url, 'postgres'), { applicationName: 'lmsctl drill' });
        await dropAbandonedDatabases(admin, manifest.database.name, (line) => ctx.out.info(line));
        ctx.out.info(`drill: restoring ${report.backup.file} into scratch database ${scratch} on ${host}:${port}`);
        await createDatabase(admin, scratch, null);
        created = true;
        report.scratch.created = true;
        await setComment(
          admin,
          scratch,
          JSON.stringify(markerFor('drill', { backup: manifest.file, target: manifest.database.name })),
        );

        const restoreStarted = Date.now();
        await runPgRestore(ctx, archive.restorePath, { url, database: scratch, jobs, signal });
        const restoreMs = Date.now() - restoreStarted;

        const checkStarted = Date.now();
        const scratchUrl = withDatabase(url, scratch);
        report.rowsChecked = await checkScratch(scratchUrl, manifest, report.checks, { jobs, signal });
        const checkMs = Date.now() - checkStarted;
        const recoveryMs = verifyMs + restoreMs;
        report.restore = { verifyMs, restoreMs, checkMs, recoveryMs, jobs };
        report.checks.push({
          kind: 'rto',
          name: 'recovery time (verify + restore) within the RTO',
          expected: `≤ ${formatDuration(objectives.rtoMs)}`,
          found: formatDuration(recoveryMs),
          ok: recoveryMs <= objectives.rtoMs,
          severity: 'warning',
        });
        report.checks.push({
          kind: 'rpo',
          name: 'backup age within the RPO',
          expected: `≤ ${formatDuration(objectives.rpoMs)}`,
          found: formatDuration(report.backup.ageMs ?? 0),
          ok: (report.backup.ageMs ?? 0) <= objectives.rpoMs,
          severity: 'warning',
        });
        if (signal.aborted) throw signal.reason;
      } finally {
        await archive.dispose();
      }
      const failed = report.checks.filter((check) => !check.ok && (check.severity === 'error' || objectives.strict));
      report.warnings.push(
        ...report.checks
          .filter((check) => !check.ok && check.severity === 'warning' && !objectives.strict)
          .map((check) => `${check.name}: ${check.found} (objective ${check.expected})`),
      );
      report.verdict = failed.length ? 'fail' : 'pass';
    } catch (error) {
      if (error instanceof VerificationError) {
        report.verdict = 'fail';
      } else {
        report.verdict = 'error';
        report.error = signal.aborted ? (signal.reason as InterruptedError).message : errorMessage(error);
      }
    } finally {
      if (created && admin) {
        if (options.keepScratch) {
          report.scratch.kept = true;
          // Kept on purpose: no longer a leftover for the clean-up to remove.
          await setComment(admin, scratch, null).catch(() => undefined);
        } else {
          await dropDatabase(admin, scratch).catch((error: unknown) =>
            report.warnings.push(`could not drop scratch database ${scratch}: ${errorMessage(error)}`),
          );
        }
      }
      await admin?.end().catch(() => undefined);
    }
  }, options.signal);

  const finished = new Date();
  report.finishedAt = finished.toISOString();
  report.durationMs = finished.getTime() - started.getTime();
  const paths = await writeReports(drillDirOf(ctx), report, started);
  // A one-off drill of a named (perhaps old) file says nothing about whether the newest backup
  // restores: it must not overwrite the scheduled drill's status the alerts watch.
  if (routine) await publishDrillMetrics(ctx, report, selector, addressed.name);
  else ctx.out.debug('drill of a named backup file: drill metrics left as the last routine drill set them');
  return { report, ...paths };
}

function verifyCheck(ok: boolean, found: string): DrillCheck {
  return {
    kind: 'verify',
    name: 'backup verifies',
    expected: 'checksum, manifest and archive intact',
    found,
    ok,
    severity: 'error',
  };
}

/** Table rows, migration version, foreign keys and application queries of the restored scratch database. */
async function checkScratch(
  url: string,
  manifest: Awaited<ReturnType<typeof prepareArchive>>['manifest'],
  checks: DrillCheck[],
  options: { jobs: number; signal: AbortSignal },
): Promise<number> {
  const client = await connectClient(url, { applicationName: 'lmsctl drill check' });
  try {
    const { migration, tables, rows } = await compareWithManifest(url, client, manifest, {
      ...options,
      analyze: false,
    });
    const version = (value: number | null) => (value === null ? 'none' : formatVersion(value));
    checks.push({
      kind: 'migration',
      name: 'newest migration',
      expected: version(migration.expected),
      found: version(migration.found),
      ok: migration.ok,
      severity: 'error',
    });
    let rowsChecked = 0;
    if (tables && rows) {
      checks.push({
        kind: 'tables',
        name: 'tables of the manifest present, no others',
        expected: rows.length,
        found: tables.ok
          ? tables.present.length
          : `missing: ${tables.missing.join(', ') || 'none'}; extra: ${tables.extra.join(', ') || 'none'}`,
        ok: tables.ok,
        severity: 'error',
      });
      for (const row of rows) {
        checks.push({
          kind: 'rows',
          name: `rows of ${row.table}`,
          expected: row.expected,
          found: row.found,
          ok: row.ok,
          severity: 'error',
        });
        rowsChecked += row.found ?? 0;
      }
    } else {
      checks.push({
        kind: 'rows',
        name: 'row counts',
        expected: 'counted at backup time',
        found: 'backup made with --no-counts',
        ok: true,
        severity: 'warning',
      });
    }

    const present = tables?.present ?? (await listTables(client));
    const keys = new Set(present.map((table) => table.key));
    checks.push(...(await integrityChecks(client, (query) => query.needs.every((table) => keys.has(table)))));
    return rowsChecked;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** drill_YYYYMMDD_HHMMSS.json and .md, never overwriting an earlier report. */
async function writeReports(
  dir: string,
  report: DrillReport,
  at: Date,
): Promise<{ reportPath: string; markdownPath: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stamp = fileStamp(at);
  for (let sequence = 1; ; sequence++) {
    const base = path.join(dir, `drill_${stamp}${sequence > 1 ? `_${sequence}` : ''}`);
    try {
      // The Markdown twin first: the JSON is what other commands look for, so it comes last.
      await writeFile(`${base}.md`, renderDrillMarkdown(report), { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    await writeFile(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
    return { reportPath: `${base}.json`, markdownPath: `${base}.md` };
  }
}

async function publishDrillMetrics(
  ctx: CommandContext,
  report: DrillReport,
  selector: BackupSelector,
  addressedName: string,
): Promise<void> {
  // The last success survives a failed drill: it comes from the newest passing routine drill of
  // this database (another database's drills have their own series).
  const lastPass = routineDrillsOf(await readDrillReports(drillDirOf(ctx)), selector).find(
    (entry) => entry.verdict === 'pass',
  );
  await publishMetrics(ctx, report.backup.database ?? addressedName, 'drill', [
    {
      name: 'lms_drill_last_success_timestamp_seconds',
      help: 'When the last passing restore drill finished (Unix time; 0 if none has passed).',
      value: lastPass ? new Date(lastPass.finishedAt).getTime() / 1000 : 0,
    },
    {
      name: 'lms_drill_last_status',
      help: 'Outcome of the last restore drill: 1 passed, 0 failed or could not run.',
      value: report.verdict === 'pass' ? 1 : 0,
    },
    {
      name: 'lms_drill_duration_seconds',
      help: 'Wall time of the last restore drill.',
      value: report.durationMs / 1000,
    },
    {
      name: 'lms_drill_rows_checked',
      help: 'Rows the last restore drill counted against the manifest.',
      value: report.rowsChecked,
    },
  ]);
}

/** What became of the scratch database: a drill that stopped before creating it dropped nothing. */
export function scratchFate(report: DrillReport): string {
  if (!report.scratch.created) return 'not created';
  return report.scratch.kept ? 'kept' : 'dropped';
}

const mark = (ok: boolean, severity: DrillCheck['severity']) => (ok ? '✅' : severity === 'error' ? '❌' : '⚠️');

export function renderDrillMarkdown(report: DrillReport): string {
  const cell = (value: string | number | null) => String(value ?? '—').replace(/\|/g, '\\|');
  const lines = [
    `# Restore drill ${report.startedAt.slice(0, 19).replace('T', ' ')} UTC — ${report.verdict.toUpperCase()}`,
    '',
    `- Backup: \`${report.backup.file}\` (${formatBytes(report.backup.sizeBytes)}${report.backup.encrypted ? ', encrypted' : ''}), taken ${report.backup.takenAt ?? 'unknown'} from \`${report.backup.database ?? 'unknown'}\`${report.backup.bundle ? `, unpacked from the bundle \`${report.backup.bundle}\`` : ''}`,
    `- sha256: \`${report.backup.sha256 || 'not verified'}\``,
    `- Scratch database: \`${report.scratch.database}\` on ${report.scratch.host}:${report.scratch.port} (${scratchFate(report)})`,
    `- Kind: ${report.routine ? 'routine drill of the newest backup' : 'one-off drill of a named backup file (no metrics published)'}`,
    report.restore
      ? `- Durations: verify ${formatDuration(report.restore.verifyMs)}, restore ${formatDuration(report.restore.restoreMs)} (${report.restore.jobs} jobs), checks ${formatDuration(report.restore.checkMs)}; drill total ${formatDuration(report.durationMs)}`
      : `- Drill total ${formatDuration(report.durationMs)}`,
    `- Objectives: RTO ${formatDuration(report.objectives.rtoMs)}, RPO ${formatDuration(report.objectives.rpoMs)}${report.objectives.strict ? ' (strict)' : ''}`,
    `- Rows checked: ${report.rowsChecked}`,
  ];
  if (report.error) lines.push('', `**The drill could not run:** ${report.error}`);
  if (report.checks.length) {
    lines.push('', '| | check | expected | found |', '|---|---|---|---|');
    for (const check of report.checks)
      lines.push(
        `| ${mark(check.ok, check.severity)} | ${cell(check.name)} | ${cell(check.expected)} | ${cell(check.found)} |`,
      );
  }
  if (report.warnings.length) lines.push('', '## Warnings', '', ...report.warnings.map((warning) => `- ${warning}`));
  lines.push('', `_lmsctl ${report.lmsctl.version}_`);
  return `${lines.join('\n')}\n`;
}
