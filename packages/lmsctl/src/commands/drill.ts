import type { ChalkInstance } from 'chalk';
import { formatDuration } from '@lms/core/duration';
import { renderVerdict, verdictExitError } from '../backup/drill-report.js';
import { scratchFate, type DrillResult } from '../backup/drill.js';
import type { CliError } from '../errors.js';

/** `lmsctl drill`: the drill is the backup domain's (src/backup/drill.ts); this is its terminal view and exit code. */
export { drill, type DrillOptions, type DrillReport, type DrillResult } from '../backup/drill.js';

export function renderDrill(result: DrillResult, style: ChalkInstance): string {
  const { report } = result;
  const failed = report.checks.filter((check) => !check.ok);
  const lines = [
    `drill ${renderVerdict(report.verdict, style)}: ${report.backup.file} → ${report.scratch.database} (${scratchFate(report)})`,
  ];
  if (report.restore) {
    lines.push(
      `  restore ${formatDuration(report.restore.restoreMs)}, ${report.checks.filter((check) => check.kind === 'rows').length} tables and ${report.rowsChecked} rows checked, ${report.checks.filter((check) => check.kind === 'foreign-key').length} foreign keys, ${report.checks.filter((check) => check.kind === 'query').length} application queries`,
    );
  }
  for (const check of failed)
    lines.push(
      `  ${check.severity === 'error' || report.objectives.strict ? style.red('✗') : style.yellow('!')} ${check.name}: expected ${check.expected}, found ${check.found}`,
    );
  if (report.error) lines.push(`  ${style.red(report.error)}`);
  lines.push(`  report ${result.reportPath}`);
  return lines.join('\n');
}

/** Exit code for a drill's verdict: 0 pass, 3 a check failed, 1 the drill could not run. */
export function drillExitError(result: DrillResult): CliError | null {
  return verdictExitError('drill', result.report, result.report.objectives.strict);
}
