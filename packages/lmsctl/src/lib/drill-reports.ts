import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** The part of a drill report that other commands rely on (list, prune, bundle, status). */
export interface DrillReportSummary {
  /** Report file (JSON). */
  path: string;
  backup: { file: string; sha256: string };
  verdict: 'pass' | 'fail' | 'error';
  finishedAt: string;
}

export const DRILL_REPORT_PATTERN = /^drill_\d{8}_\d{6}(?:_\d+)?\.json$/;

/** Every readable drill report in `dir`, newest first; unreadable files are skipped. */
export async function readDrillReports(dir: string): Promise<DrillReportSummary[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const reports: DrillReportSummary[] = [];
  for (const name of names.filter((entry) => DRILL_REPORT_PATTERN.test(entry))) {
    const file = path.join(dir, name);
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<DrillReportSummary>;
      if (!parsed.backup?.file || !parsed.backup.sha256 || !parsed.verdict || !parsed.finishedAt) continue;
      reports.push({ path: file, backup: parsed.backup, verdict: parsed.verdict, finishedAt: parsed.finishedAt });
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
