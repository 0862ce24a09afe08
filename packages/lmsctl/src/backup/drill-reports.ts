import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { selects, type BackupSelector, type DatabaseIdentity } from './identity.js';

/** The part of a drill report that other commands rely on (list, prune, bundle, status). */
export interface DrillReportSummary {
  /** Report file (JSON). */
  path: string;
  backup: { file: string; sha256: string };
  /** The database the drilled backup came from (reports before identities: its name only). */
  source: DatabaseIdentity | { name: string } | null;
  /**
   * A drill of the newest backup (`drill`, the schedule's), as opposed to a one-off drill of a
   * named file: only routine drills speak for "can the newest backup be restored?".
   */
  routine: boolean;
  verdict: 'pass' | 'fail' | 'error';
  finishedAt: string;
}

export const DRILL_REPORT_PATTERN = /^drill_\d{8}_\d{6}(?:_\d+)?\.json$/;

interface StoredReport {
  backup?: { file?: string; sha256?: string; database?: string | null; source?: DatabaseIdentity | null };
  routine?: boolean;
  verdict?: DrillReportSummary['verdict'];
  finishedAt?: string;
}

/** Every readable drill report in `dir`, newest first; unreadable files are skipped. */
export async function readDrillReports(dir: string): Promise<DrillReportSummary[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const reports: DrillReportSummary[] = [];
  for (const name of names.filter((entry) => DRILL_REPORT_PATTERN.test(entry))) {
    const file = path.join(dir, name);
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as StoredReport;
      if (!parsed.backup?.file || !parsed.backup.sha256 || !parsed.verdict || !parsed.finishedAt) continue;
      const { source, database } = parsed.backup;
      reports.push({
        path: file,
        backup: { file: parsed.backup.file, sha256: parsed.backup.sha256 },
        source: source ?? (database ? { name: database } : null),
        routine: parsed.routine ?? true,
        verdict: parsed.verdict,
        finishedAt: parsed.finishedAt,
      });
    } catch {
      continue;
    }
  }
  return reports.sort((a, b) => b.finishedAt.localeCompare(a.finishedAt));
}

/** The newest drill of the backup with this file name and checksum. */
export function lastDrillOf(
  reports: DrillReportSummary[],
  file: string,
  sha256: string | undefined,
): DrillReportSummary | undefined {
  return reports.find((report) => report.backup.file === file && (!sha256 || report.backup.sha256 === sha256));
}

/** The routine drills of the database `selector` picks, newest first. */
export function routineDrillsOf(reports: DrillReportSummary[], selector: BackupSelector): DrillReportSummary[] {
  return reports.filter((report) => {
    if (!report.routine) return false;
    const { source } = report;
    // A report written before identities were recorded knows only the name: matched by name.
    if (source && !('host' in source)) return selector.kind === 'all' || source.name === databaseNameOf(selector);
    return selects(selector, source);
  });
}

function databaseNameOf(selector: Exclude<BackupSelector, { kind: 'all' }>): string {
  return selector.kind === 'name' ? selector.name : selector.database.name;
}
