import type { ChalkInstance } from 'chalk';
import {
  connectClient,
  defaultMigrationsDir,
  describePostgresUrl,
  errorMessage,
  formatVersion,
  maskUrl,
  readMigrationFiles,
} from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { type CliError, usageError } from '../../errors.js';
import {
  connectAzure,
  resolveAzureScope,
  translateAzureError,
  withAzureErrors,
  type AzureConnectionOptions,
  type AzureScope,
  type AzureSession,
} from '../../azure/client.js';
import { type InterruptedError, withInterrupt } from '../../lib/interrupt.js';
import { lmsctlVersion } from '../../version.js';
import { waitForOperation } from '../../azure/server-facts.js';
import { newestMigration } from '../../backup/catalog.js';
import {
  integrityChecks,
  renderVerdict,
  type DrillCheck,
  type DrillVerdict,
  verdictExitError,
} from '../../backup/drill-report.js';
import { ISO, checkRequest, planRestore, startRestore, type RestoreRequest } from '../../azure/point-in-time.js';

export interface PitrDrillOptions extends AzureConnectionOptions {
  server: string;
  targetServer: string;
  /** Default: a minute ago (the latest restore point, allowing for clock skew). */
  restoreTime?: Date;
  location?: string;
  /**
   * URL of the restored database with `{host}` for the new server's name, e.g.
   * `postgres://lmsadmin@{host}:5432/lms?sslmode=require`; the password comes from the URL or
   * PGPASSWORD. Without it no connection is possible and the checks are skipped.
   */
  databaseUrlTemplate?: string;
  /** Recovery time objective in milliseconds, `--rto` (default LMS_DRILL_RTO). */
  rto?: number;
  /** Aborts the drill (the temporary server is still deleted); without it, SIGINT/SIGTERM do. */
  signal?: AbortSignal;
}

export interface PitrDrillReport {
  format: 'lmsctl-pitr-drill-report';
  formatVersion: 1;
  verdict: DrillVerdict;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  source: { name: string; resourceId: string };
  restoreTime: string;
  target: { name: string; location: string; fqdn: string | null; deleted: boolean };
  /** Create request → server ready. */
  recovery: { startedAt: string; readyAt: string; recoveryMs: number } | null;
  objectives: { rtoMs: number };
  /** The database the checks ran on (password masked). */
  database: string | null;
  checks: DrillCheck[];
  /** Why the checks did not run, when they did not. */
  checksSkipped: string | null;
  warnings: string[];
  /** Why the drill could not run or finish (verdict `error`). */
  error: string | null;
  lmsctl: { version: string };
}

const HOST_PLACEHOLDER = '{host}';

/** The restored database's URL from the template: `{host}` replaced, PGPASSWORD as the password if none is given. */
function drillDatabaseUrl(template: string, fqdn: string, env: NodeJS.ProcessEnv): string {
  const url = new URL(template.replaceAll(HOST_PLACEHOLDER, fqdn));
  if (!url.password && env.PGPASSWORD) url.password = env.PGPASSWORD;
  return url.toString();
}

function checkTemplate(template: string): void {
  const hint = 'e.g. --database-url-template "postgres://lmsadmin@{host}:5432/lms?sslmode=require"';
  if (!template.includes(HOST_PLACEHOLDER)) {
    throw usageError(`the database URL template must contain ${HOST_PLACEHOLDER} for the new server's name`, hint);
  }
  const sample = template.replaceAll(HOST_PLACEHOLDER, 'server.example');
  if (!/^postgres(ql)?:\/\//i.test(sample) || !URL.canParse(sample)) {
    throw usageError(`the database URL template is not a postgres:// URL: ${maskUrl(sample)}`, hint);
  }
}

/**
 * The drill checks that need no manifest, on the restored database: the migration version,
 * every foreign key (orphans counted where PostgreSQL did not validate it), and the
 * application queries — which here must all answer, since a restore of the whole server
 * brings every table back.
 */
async function checkRestoredDatabase(url: string, checks: DrillCheck[]): Promise<void> {
  const client = await connectClient(url, { applicationName: 'lmsctl azure pitr-drill', timeoutMs: 30_000 });
  try {
    const files = await readMigrationFiles(defaultMigrationsDir);
    // In version order, so the newest is the last.
    const newestFile = files.at(-1)?.version ?? null;
    const migration = await newestMigration(client);
    checks.push({
      kind: 'migration',
      name: 'newest migration (of this lmsctl)',
      expected: newestFile === null ? 'none' : formatVersion(newestFile),
      found: migration ? formatVersion(migration.version) : 'none',
      ok: migration !== null && migration.version === newestFile,
      // An older restore point may predate the last deploy; no migrations at all is not LMS data.
      severity: migration === null ? 'error' : 'warning',
    });
    checks.push(...(await integrityChecks(client)));
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * `lmsctl azure pitr-drill`: proves the managed backups restore. Restores the source to a
 * temporary server (validated like `pitr`, no confirmation: it creates only a new server),
 * records the recovery time (create → ready) against the RTO, runs the drill checks on it when
 * `databaseUrlTemplate` makes a connection possible, and always deletes the temporary server —
 * after a failed check, a failed restore or Ctrl-C too.
 */
export async function azurePitrDrill(ctx: CommandContext, options: PitrDrillOptions): Promise<PitrDrillReport> {
  const started = new Date();
  // The latest restore point, a minute back: a time even seconds ahead of Azure's clock is refused.
  const request: RestoreRequest = {
    ...options,
    restoreTime: options.restoreTime ?? new Date(started.getTime() - 60_000),
  };
  const scope = resolveAzureScope(ctx, options);
  checkRequest(request, started);
  if (options.databaseUrlTemplate !== undefined) checkTemplate(options.databaseUrlTemplate);
  const azure = await connectAzure(ctx, scope, options.testing);
  const plan = await withAzureErrors(scope, () => planRestore(azure, request, started));
  const rtoMs = options.rto ?? ctx.config.LMS_DRILL_RTO;
  const report: PitrDrillReport = {
    format: 'lmsctl-pitr-drill-report',
    formatVersion: 1,
    verdict: 'error',
    startedAt: ISO(started),
    finishedAt: ISO(started),
    durationMs: 0,
    source: { name: options.server, resourceId: plan.sourceId },
    restoreTime: ISO(request.restoreTime),
    target: { name: options.targetServer, location: plan.location, fqdn: null, deleted: false },
    recovery: null,
    objectives: { rtoMs },
    database: null,
    checks: [],
    checksSkipped: null,
    warnings: [],
    error: null,
    lmsctl: { version: lmsctlVersion },
  };

  await withInterrupt(async (signal) => {
    const accepted = { yes: false, operationUrl: null as string | null };
    try {
      ctx.out.info(
        `pitr-drill: restoring ${options.server} as of ${report.restoreTime} into temporary server ${options.targetServer} (${plan.location})`,
      );
      const createStarted = new Date();
      const { poller } = await startRestore(azure, options.targetServer, plan.body, accepted);
      const server = await waitForOperation(ctx, `restoring into ${options.targetServer}`, poller, signal);
      const readyAt = new Date();
      const recoveryMs = readyAt.getTime() - createStarted.getTime();
      report.recovery = { startedAt: ISO(createStarted), readyAt: ISO(readyAt), recoveryMs };
      report.target.fqdn = server.fullyQualifiedDomainName ?? null;
      report.checks.push({
        kind: 'rto',
        name: 'recovery time (create → server ready) within the RTO',
        expected: `≤ ${formatDuration(rtoMs)}`,
        found: formatDuration(recoveryMs),
        ok: recoveryMs <= rtoMs,
        severity: 'warning',
      });
      if (options.databaseUrlTemplate === undefined) {
        report.checksSkipped =
          'no --database-url-template, so no connection to the restored server was possible: the drill checks were skipped';
      } else if (!report.target.fqdn) {
        report.checksSkipped = 'Azure reported no host name for the restored server: the drill checks were skipped';
      } else {
        const url = drillDatabaseUrl(options.databaseUrlTemplate, report.target.fqdn, ctx.env);
        report.database = maskUrl(url);
        const { host, port } = describePostgresUrl(url);
        ctx.out.info(`pitr-drill: checking the restored database on ${host}:${port}`);
        await checkRestoredDatabase(url, report.checks);
      }
      if (signal.aborted) throw signal.reason;
      report.warnings.push(
        ...report.checks
          .filter((check) => !check.ok && check.severity === 'warning')
          .map((check) => `${check.name}: ${check.found} (expected ${check.expected})`),
      );
      report.verdict = report.checks.some((check) => !check.ok && check.severity === 'error') ? 'fail' : 'pass';
    } catch (error) {
      report.verdict = 'error';
      const translated = translateAzureError(error, scope);
      report.error = signal.aborted ? (signal.reason as InterruptedError).message : errorMessage(translated);
    } finally {
      if (accepted.yes) await deleteTemporaryServer(ctx, azure, scope, report);
    }
  }, options.signal);

  const finished = new Date();
  report.finishedAt = ISO(finished);
  report.durationMs = finished.getTime() - started.getTime();
  return report;
}

/** Deletes the drill's server; a failure to do so makes the drill an error (it keeps costing money). */
async function deleteTemporaryServer(
  ctx: CommandContext,
  azure: AzureSession,
  scope: AzureScope,
  report: PitrDrillReport,
): Promise<void> {
  const name = report.target.name;
  try {
    ctx.out.info(`pitr-drill: deleting temporary server ${name}`);
    const poller = await azure.client.servers.beginDelete(scope.resourceGroup, name, azure.lroOptions);
    await waitForOperation(ctx, `deleting ${name}`, poller);
    report.target.deleted = true;
  } catch (error) {
    const translated = translateAzureError(error, scope) as Error;
    const message = `could not delete temporary server ${name}: ${translated.message}; delete it with \`az postgres flexible-server delete -g ${scope.resourceGroup} -n ${name} --yes\``;
    report.warnings.push(message);
    report.verdict = 'error';
    report.error ??= message;
  }
}

const mark = (check: DrillCheck) => (check.ok ? '✓' : check.severity === 'error' ? '✗' : '!');

export function renderPitrDrill(report: PitrDrillReport, style: ChalkInstance): string {
  const lines = [
    `pitr-drill ${renderVerdict(report.verdict, style)}: ${report.source.name} as of ${report.restoreTime} → ${report.target.name} (${report.target.deleted ? 'deleted' : style.red('NOT deleted')})`,
  ];
  if (report.recovery) {
    lines.push(
      `  recovery time ${formatDuration(report.recovery.recoveryMs)} (create → ready; objective ≤ ${formatDuration(report.objectives.rtoMs)})`,
    );
  }
  if (report.database) {
    const count = (kind: DrillCheck['kind']) => report.checks.filter((check) => check.kind === kind).length;
    lines.push(
      `  checked ${report.database}: ${count('foreign-key')} foreign keys, ${count('query')} application queries, the migration version`,
    );
  }
  for (const check of report.checks.filter((entry) => !entry.ok)) {
    lines.push(`  ${mark(check)} ${check.name}: expected ${check.expected}, found ${check.found}`);
  }
  if (report.checksSkipped) lines.push(`  ${style.yellow('checks skipped:')} ${report.checksSkipped}`);
  if (report.error) lines.push(`  ${style.red(report.error)}`);
  return lines.join('\n');
}

/** Exit code for a pitr-drill: 0 pass, 3 a check failed, 1 the drill could not run (or clean up). */
export function pitrDrillExitError(report: PitrDrillReport): CliError | null {
  return verdictExitError('pitr-drill', report);
}
