import type { Server } from '@azure/arm-postgresql-flexible';
import type { ChalkInstance } from 'chalk';
import {
  connectClient,
  defaultMigrationsDir,
  describePostgresUrl,
  formatVersion,
  maskUrl,
  readMigrationFiles,
} from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import {
  connectAzure,
  resolveAzureScope,
  translateAzureError,
  withAzureErrors,
  type AzureConnectionOptions,
  type AzureScope,
  type AzureSession,
} from '../lib/azure-client.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { type InterruptedError, withInterrupt } from '../lib/interrupt.js';
import { lmsctlVersion } from '../version.js';
import {
  appDatabaseUrl,
  restoreWindowOf,
  serverNameProblem,
  waitForOperation,
  type OperationPoller,
  type RestoreWindow,
} from './azure.js';
import { newestMigration } from './backup.js';
import { integrityChecks, type DrillCheck, type DrillVerdict } from './drill.js';

/** What a point-in-time restore needs, besides where it happens. */
interface RestoreRequest {
  /** The source server. */
  server: string;
  restoreTime: Date;
  /** The new server to create; must not exist. */
  targetServer: string;
  /** Region of the new server (default: the source's). */
  location?: string;
}

export interface PitrOptions extends AzureConnectionOptions, RestoreRequest {
  /** Return as soon as Azure accepted the restore, with the operation to poll. */
  noWait?: boolean;
}

export interface PitrResult {
  /** `ready`: the new server is up; `started`: --no-wait returned once Azure accepted it. */
  status: 'ready' | 'started';
  source: { name: string; resourceId: string };
  restoreTime: string;
  window: { earliest: string; latest: string; retentionDays: number };
  target: { name: string; resourceId: string; location: string; fqdn: string | null; state: string | null };
  startedAt: string;
  readyAt: string | null;
  /** Create request → server ready: the recovery time achieved. */
  elapsedMs: number | null;
  /** Where to point the application (password masked). */
  databaseUrl: string | null;
  /** The Azure-AsyncOperation URL of the restore (GET it with a token to follow it). */
  operationUrl: string | null;
}

const ISO = (date: Date) => date.toISOString();

/** Checks that need no request: the time is not in the future, the target name is valid and new. */
function checkRequest(request: RestoreRequest, now: Date): void {
  if (Number.isNaN(request.restoreTime.getTime())) throw usageError('the restore time is not a valid time');
  if (request.restoreTime.getTime() > now.getTime()) {
    throw usageError(
      `restore time ${ISO(request.restoreTime)} is in the future (it is now ${ISO(now)})`,
      'give a past time in UTC, e.g. --restore-time 2026-11-28T09:30:00Z',
    );
  }
  const problem = serverNameProblem(request.targetServer);
  if (problem) {
    throw usageError(
      `target server name "${request.targetServer}" is invalid: it ${problem}`,
      'e.g. --target-server prod-pg-restore-1128',
    );
  }
  if (request.targetServer === request.server) {
    throw usageError('the target server must be a new server, not the source', 'give a new --target-server name');
  }
  if (request.location !== undefined && !/^[a-z0-9]+$/i.test(request.location)) {
    throw usageError(`"${request.location}" is not an Azure region name`, 'e.g. --location westeurope');
  }
}

interface RestorePlan {
  source: Server;
  sourceId: string;
  window: RestoreWindow;
  location: string;
  body: Server;
}

const isStatus = (error: unknown, status: number) => (error as { statusCode?: number }).statusCode === status;

/**
 * The checks that read Azure before anything is created: the source exists, the time lies in
 * its restore window, and the target name is free in the resource group and across Azure
 * (server names are DNS names). Failures are usage errors (exit 2); only GETs and the
 * name-availability POST are sent.
 */
async function planRestore(azure: AzureSession, request: RestoreRequest, now: Date): Promise<RestorePlan> {
  const { client, scope } = azure;
  const source = await client.servers.get(scope.resourceGroup, request.server);
  const window = restoreWindowOf(source, now);
  if (request.restoreTime.getTime() < window.earliest.getTime()) {
    throw usageError(
      `restore time ${ISO(request.restoreTime)} is before the earliest restore point of ${request.server}, ${ISO(window.earliest)} (backups are kept ${window.retentionDays} days)`,
      `choose a time from ${ISO(window.earliest)} to now; \`lmsctl azure backups --server ${request.server}\` shows the window`,
    );
  }
  const taken = await client.servers.get(scope.resourceGroup, request.targetServer).then(
    () => true,
    (error: unknown) => {
      if (isStatus(error, 404)) return false;
      throw error;
    },
  );
  if (taken) {
    throw usageError(
      `server ${request.targetServer} already exists in resource group ${scope.resourceGroup}`,
      'choose another --target-server; a restore always creates a new server',
    );
  }
  const availability = await client.nameAvailability
    .checkGlobally({ name: request.targetServer, type: 'Microsoft.DBforPostgreSQL/flexibleServers' })
    // Roles scoped to a resource group may not allow this subscription-level check; the create
    // itself then reports a taken name (409).
    .catch((error: unknown) => {
      if (isStatus(error, 403)) return null;
      throw error;
    });
  if (availability?.nameAvailable === false) {
    throw usageError(
      `server name ${request.targetServer} is not available: ${availability.message ?? availability.reason ?? 'taken'}`,
      'choose another --target-server (server names are unique across Azure)',
    );
  }
  const sourceId = source.id ?? azure.serverId(request.server);
  const location = request.location ?? source.location;
  return {
    source,
    sourceId,
    window,
    location,
    body: {
      location,
      createMode: 'PointInTimeRestore',
      sourceServerResourceId: sourceId,
      pointInTimeUTC: request.restoreTime,
    },
  };
}

/** The started create: its poller, and whether (and where) Azure accepted it. */
interface StartedRestore {
  poller: OperationPoller<Server>;
  accepted: { yes: boolean; operationUrl: string | null };
}

/**
 * Sends the PointInTimeRestore create. `accepted` turns true once Azure answered the PUT with
 * success — from then on a server exists that a drill must delete, also if polling fails.
 */
async function startRestore(
  azure: AzureSession,
  target: string,
  body: Server,
  accepted: StartedRestore['accepted'],
): Promise<StartedRestore> {
  const poller = await azure.client.servers.beginCreateOrUpdate(azure.scope.resourceGroup, target, body, {
    ...azure.lroOptions,
    onResponse: (raw) => {
      if (raw.request.method === 'PUT' && raw.status < 300) {
        accepted.yes = true;
        accepted.operationUrl = raw.headers.get('azure-asyncoperation') ?? raw.headers.get('location') ?? null;
      }
    },
  });
  return { poller, accepted };
}

/**
 * `lmsctl azure pitr`: restores a flexible server to a point in time into a new server.
 * Validates first (time in the future or outside the retention window, invalid or taken target
 * name — exit 2, nothing created), asks unless --yes, starts the PointInTimeRestore create and
 * polls it to the end (or returns the operation with --no-wait).
 */
export async function azurePitr(ctx: CommandContext, options: PitrOptions): Promise<PitrResult> {
  const now = new Date();
  const scope = resolveAzureScope(ctx, options);
  checkRequest(options, now);
  const azure = await connectAzure(ctx, scope, options.testing);
  return withAzureErrors(scope, async () => {
    const plan = await planRestore(azure, options, now);
    const time = ISO(options.restoreTime);
    ctx.out.info(
      `this creates a new server ${options.targetServer} in ${plan.location} (resource group ${scope.resourceGroup}) ` +
        `from ${options.server} as it was at ${time}; ${options.server} itself is not changed`,
    );
    await confirmOrRefuse(`Restore ${options.server} as of ${time} into new server ${options.targetServer}?`, {
      yes: ctx.yes,
      action: `restore ${options.server} to ${time} into new server ${options.targetServer}`,
      stderr: ctx.out.streams.stderr,
    });
    const startedAt = new Date();
    const { poller, accepted } = await startRestore(azure, options.targetServer, plan.body, {
      yes: false,
      operationUrl: null,
    });
    const result: PitrResult = {
      status: 'started',
      source: { name: options.server, resourceId: plan.sourceId },
      restoreTime: time,
      window: {
        earliest: ISO(plan.window.earliest),
        latest: ISO(plan.window.latest),
        retentionDays: plan.window.retentionDays,
      },
      target: {
        name: options.targetServer,
        resourceId: azure.serverId(options.targetServer),
        location: plan.location,
        fqdn: null,
        state: null,
      },
      startedAt: ISO(startedAt),
      readyAt: null,
      elapsedMs: null,
      databaseUrl: null,
      operationUrl: accepted.operationUrl,
    };
    if (options.noWait) return result;

    const server = await waitForOperation(ctx, `restoring ${options.server} → ${options.targetServer}`, poller);
    const readyAt = new Date();
    result.status = 'ready';
    result.readyAt = ISO(readyAt);
    result.elapsedMs = readyAt.getTime() - startedAt.getTime();
    result.target.fqdn = server.fullyQualifiedDomainName ?? null;
    result.target.state = server.state ?? null;
    result.target.resourceId = server.id ?? result.target.resourceId;
    result.databaseUrl = result.target.fqdn
      ? appDatabaseUrl(ctx, result.target.fqdn, server.administratorLogin ?? plan.source.administratorLogin)
      : null;
    return result;
  });
}

export function renderPitr(result: PitrResult, style: ChalkInstance): string {
  if (result.status === 'started') {
    return [
      `restore of ${result.source.name} as of ${result.restoreTime} into ${result.target.name} started (not waiting)`,
      `  operation: ${result.operationUrl ?? 'unknown'}`,
      `  follow it with \`lmsctl azure servers\` (state Provisioning → Ready) or \`az rest --method get --url <operation>\``,
    ].join('\n');
  }
  const lines = [
    `${style.green('restored')} ${result.source.name} as of ${result.restoreTime} into ${style.bold(result.target.name)} (${result.target.location}) in ${formatDuration(result.elapsedMs ?? 0)}`,
    `  server   ${result.target.fqdn ?? 'unknown'} (${result.target.state ?? 'state unknown'})`,
  ];
  if (result.databaseUrl) {
    lines.push('  point the application at it (set the password):', `    DATABASE_URL=${result.databaseUrl}`);
  }
  lines.push('  then check it: lmsctl migrate status, and docs/runbooks/azure-pitr.md');
  return lines.join('\n');
}

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
  /** Recovery time objective (default LMS_DRILL_RTO). */
  rtoMs?: number;
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
  const rtoMs = options.rtoMs ?? ctx.config.LMS_DRILL_RTO;
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
      report.error = signal.aborted
        ? (signal.reason as InterruptedError).message
        : ((translated as Error).message ?? String(translated));
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
  const verdict = { pass: style.green('PASS'), fail: style.red('FAIL'), error: style.red('COULD NOT RUN') }[
    report.verdict
  ];
  const lines = [
    `pitr-drill ${verdict}: ${report.source.name} as of ${report.restoreTime} → ${report.target.name} (${report.target.deleted ? 'deleted' : style.red('NOT deleted')})`,
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
  if (report.verdict === 'pass') return null;
  if (report.verdict === 'fail') {
    const first = report.checks.find((check) => !check.ok && check.severity === 'error');
    return new CliError(
      ExitCode.verification,
      `pitr-drill failed: ${first ? `${first.name}: expected ${first.expected}, found ${first.found}` : 'see the report'}`,
      undefined,
      true,
    );
  }
  return new CliError(
    ExitCode.failed,
    `pitr-drill could not run: ${report.error ?? 'see the report'}`,
    undefined,
    true,
  );
}
