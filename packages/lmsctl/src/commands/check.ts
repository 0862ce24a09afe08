import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChalkInstance } from 'chalk';
import { execa } from 'execa';
import { connectClient, defaultMigrationsDir, describePostgresUrl, errorMessage, maskUrl, Migrator } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import { NO_DATABASE_GIVEN, type CommandContext } from '../context.js';
import { addressedIdentity, describeBackups, newestVerifiedBackupOf, selectBackups } from '../backup/inventory.js';
import type { BackupSelector } from '../backup/identity.js';
import { backupDirOf } from '../backup/context.js';
import {
  databaseDiskItem,
  probe,
  probeApi,
  probeBackups,
  probeDisk,
  probeDrill,
  probePostgres,
  probeQueues,
  probeRedis,
  renderItems,
  type ItemState,
  type ProbeOptions,
  type StatusItem,
} from '../health/probes.js';
import { howToEnableStatements, topStatements } from '../postgres/statements.js';
import { queryScalar } from '../lib/prometheus.js';
import { RUNBOOK_BASE } from '../health/runbooks.js';

export type Checklist = 'daily' | 'weekly' | 'predeploy';

export interface CheckOptions extends ProbeOptions {
  /** Prometheus HTTP API base URL, for error rate and latency. */
  prometheusUrl?: string;
  /** Alertmanager base URL, for the alert delivery test. */
  alertmanagerUrl?: string;
  /** predeploy: the newest verified backup must be younger than this (milliseconds, `--max-backup-age`). */
  maxBackupAge?: number;
  /** weekly: the image trivy scans (default LMS_IMAGE, else lms:latest). */
  image?: string;
}

export interface CheckResult {
  checklist: Checklist;
  passed: boolean;
  items: StatusItem[];
}

/**
 * The PromQL of `check daily`. `http_requests_total` counts user requests only (the API leaves
 * its probes and scrapes out), `job="api"` keeps other jobs' series of the same name out, as in
 * the alert rules and dashboards. The errors fall back to 0 when no request failed (no 5xx
 * series at all): only the request count says whether there was traffic.
 */
export const dailyTrafficQueries = {
  requests: 'sum(increase(http_requests_total{job="api"}[24h]))',
  errors: 'sum(increase(http_requests_total{job="api",status_code=~"5.."}[24h])) or vector(0)',
  p99: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[24h])))',
} as const;

/** The day's 5xx share and 99th percentile latency of the API, from Prometheus. */
async function prometheusItems(options: CheckOptions): Promise<StatusItem[]> {
  if (!options.prometheusUrl) {
    return [
      {
        name: 'error rate',
        state: 'manual',
        detail: 'check the 5xx rate of the last 24 h in Grafana (or pass --prometheus-url)',
      },
      {
        name: 'latency p99',
        state: 'manual',
        detail: 'check the p99 latency of the last 24 h in Grafana (or pass --prometheus-url)',
      },
    ];
  }
  const where = maskUrl(options.prometheusUrl).replace(/\/+$/, '');
  try {
    const requests = await queryScalar(options.prometheusUrl, dailyTrafficQueries.requests);
    const errors = await queryScalar(options.prometheusUrl, dailyTrafficQueries.errors);
    const p99 = await queryScalar(options.prometheusUrl, dailyTrafficQueries.p99);
    const errorRate = requests ? (errors ?? 0) / requests : null;
    const rateState: ItemState =
      errorRate === null ? 'warn' : errorRate > 0.05 ? 'fail' : errorRate > 0.01 ? 'warn' : 'ok';
    const latencyState: ItemState = p99 === null ? 'warn' : p99 > 5 ? 'fail' : p99 > 1 ? 'warn' : 'ok';
    return [
      {
        name: 'error rate',
        state: rateState,
        detail:
          errorRate === null
            ? `no requests recorded in ${where} for the last 24 h (job "api")`
            : `${(errorRate * 100).toFixed(2)} % of ${Math.round(requests ?? 0)} requests answered 5xx in the last 24 h (alert at 5 %)`,
        data: { errorRate, requests },
      },
      {
        name: 'latency p99',
        state: latencyState,
        detail:
          p99 === null
            ? 'no latency recorded for the last 24 h'
            : `p99 ${formatDuration(p99 * 1000)} over the last 24 h (alert at 5 s)`,
        data: { p99Seconds: p99 },
      },
    ];
  } catch (error) {
    return [{ name: 'prometheus', state: 'fail', detail: `${where}: ${errorMessage(error)}` }];
  }
}

/** The slowest statements by mean time, where pg_stat_statements is installed. */
async function slowQueries(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [];
  const client = await connectClient(url, { applicationName: 'lmsctl check' });
  try {
    const rows = await topStatements(client, 5, 'mean');
    if (typeof rows === 'string') {
      return [
        {
          name: 'slow queries',
          state: 'manual',
          detail: `review slow queries in the PostgreSQL log (${howToEnableStatements(rows, describePostgresUrl(url).database)})`,
        },
      ];
    }
    const slow = rows.filter((row) => row.meanMs > 500);
    return [
      {
        name: 'slow queries',
        state: slow.length ? 'warn' : 'ok',
        detail: rows.length
          ? rows.map((row) => `${formatDuration(row.meanMs)} × ${row.calls}: ${row.query.slice(0, 80)}`).join(' | ')
          : 'no statements recorded yet',
        data: { top: rows },
      },
    ];
  } finally {
    await client.end();
  }
}

/** Sends a short-lived test alert through Alertmanager and checks it was accepted. */
async function alertDelivery(options: CheckOptions): Promise<StatusItem[]> {
  if (!options.alertmanagerUrl) {
    return [
      {
        name: 'alert delivery',
        state: 'manual',
        detail: 'send a test alert through Alertmanager (or pass --alertmanager-url) and confirm it arrives',
      },
    ];
  }
  const base = options.alertmanagerUrl.replace(/\/+$/, '');
  const where = maskUrl(base);
  const now = new Date();
  const alert = {
    labels: { alertname: 'LmsctlDeliveryTest', severity: 'info', source: 'lmsctl check weekly' },
    // The annotations every alert of alerts.yml carries, so the receivers' templates render it alike.
    annotations: {
      summary: 'Weekly alert delivery test from lmsctl; no action needed.',
      description:
        'lmsctl check weekly sent this to confirm that alerts reach every channel (e-mail, Slack, PagerDuty); it resolves itself after 5 minutes.',
      runbook_url: `${RUNBOOK_BASE}lmsctl-delivery-test.md`,
    },
    startsAt: now.toISOString(),
    endsAt: new Date(now.getTime() + 5 * 60_000).toISOString(),
  };
  try {
    const sent = await fetch(`${base}/api/v2/alerts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([alert]),
      signal: AbortSignal.timeout(5000),
    });
    if (!sent.ok)
      return [{ name: 'alert delivery', state: 'fail', detail: `${where} refused the test alert (${sent.status})` }];
    const listed = await fetch(`${base}/api/v2/alerts?filter=${encodeURIComponent('alertname="LmsctlDeliveryTest"')}`, {
      signal: AbortSignal.timeout(5000),
    });
    const alerts = (await listed.json()) as unknown[];
    return [
      {
        name: 'alert delivery',
        state: Array.isArray(alerts) && alerts.length > 0 ? 'ok' : 'fail',
        detail:
          Array.isArray(alerts) && alerts.length > 0
            ? `${where} accepted the test alert LmsctlDeliveryTest`
            : `${where} accepted but does not list the test alert`,
      },
      {
        name: 'alert received',
        state: 'manual',
        detail: 'confirm LmsctlDeliveryTest reached the receivers (e-mail, Slack, PagerDuty)',
      },
    ];
  } catch (error) {
    return [{ name: 'alert delivery', state: 'fail', detail: `${where}: ${errorMessage(error)}` }];
  }
}

/** The checkout lmsctl runs from: the nearest folder above this file with a pnpm lockfile. */
function repositoryOfLmsctl(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'pnpm-lock.yaml'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

const SEVERITIES = ['critical', 'high', 'moderate', 'low', 'info'] as const;
type Severity = (typeof SEVERITIES)[number];

/** What a tool printed, reduced to its first meaningful line (pnpm and trivy print boxes and blank lines). */
function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((line) => line.replace(/^[\s×│╭╰─]+/, '').trim())
      .find((line) => line.length > 0) ?? 'no output'
  );
}

/**
 * `pnpm audit --prod` of the repository lmsctl runs from: a critical or high advisory fails the
 * checklist, a moderate or low one warns; a registry that cannot answer warns (the audit did not
 * happen, which must not read as a pass).
 */
async function dependencyAudit(ctx: CommandContext): Promise<StatusItem[]> {
  const name = 'dependency audit';
  const repository = repositoryOfLmsctl();
  if (!repository) {
    return [
      {
        name,
        state: 'manual',
        detail: 'lmsctl does not run from a checkout: run `pnpm audit --prod` in the repository',
      },
    ];
  }
  const run = await execa('pnpm', ['audit', '--prod', '--json'], {
    cwd: repository,
    env: ctx.env,
    extendEnv: false,
    reject: false,
    timeout: 120_000,
  });
  if (run.failed && run.exitCode === undefined) {
    const reason =
      (run as { code?: string }).code === 'ENOENT' ? 'pnpm is not installed' : firstLine(run.shortMessage ?? '');
    return [{ name, state: 'warn', detail: `${reason}: run \`pnpm audit --prod\` in ${repository} by hand` }];
  }
  let report: {
    advisories?: Record<string, { module_name: string; severity: string; title: string }>;
    metadata?: { vulnerabilities?: Partial<Record<Severity, number>>; dependencies?: number };
  };
  try {
    report = JSON.parse(run.stdout) as typeof report;
  } catch {
    // pnpm prints a registry error as text even with --json.
    return [
      {
        name,
        state: 'warn',
        detail: `the audit did not run: ${firstLine(run.stdout || run.stderr)}; run \`pnpm audit --prod\` in ${repository} again later`,
      },
    ];
  }
  const counts = report.metadata?.vulnerabilities ?? {};
  const found = SEVERITIES.filter((severity) => (counts[severity] ?? 0) > 0);
  const modules = [...new Set(Object.values(report.advisories ?? {}).map((advisory) => advisory.module_name))].sort();
  const state: ItemState = counts.critical || counts.high ? 'fail' : counts.moderate || counts.low ? 'warn' : 'ok';
  return [
    {
      name,
      state,
      detail: found.length
        ? `${found.map((severity) => `${counts[severity]} ${severity}`).join(', ')} in ${modules.join(', ')}: \`pnpm audit --prod\` in ${repository} for the advisories`
        : `no known vulnerabilities in ${report.metadata?.dependencies ?? '?'} production dependencies`,
      data: { repository, vulnerabilities: counts, modules },
    },
  ];
}

const TRIVY_INSTALL_HINT =
  'install trivy (https://trivy.dev/latest/getting-started/installation/: the aquasecurity apt or rpm repository, brew install trivy, or its release binary on PATH) to scan it';

/** `trivy image` of the LMS image: HIGH or CRITICAL vulnerabilities fail; no trivy warns with how to install it. */
async function imageScan(ctx: CommandContext, options: CheckOptions): Promise<StatusItem[]> {
  const name = 'image scan';
  const image = options.image ?? (ctx.env.LMS_IMAGE || 'lms:latest');
  const run = await execa('trivy', ['image', '--quiet', '--format', 'json', '--severity', 'HIGH,CRITICAL', image], {
    cwd: ctx.cwd,
    env: ctx.env,
    extendEnv: false,
    reject: false,
    timeout: 15 * 60_000,
  });
  if ((run as { code?: string }).code === 'ENOENT') {
    return [{ name, state: 'warn', detail: `trivy is not installed, ${image} was not scanned: ${TRIVY_INSTALL_HINT}` }];
  }
  if (run.exitCode !== 0) {
    return [{ name, state: 'warn', detail: `trivy could not scan ${image}: ${firstLine(run.stderr || run.stdout)}` }];
  }
  const report = JSON.parse(run.stdout || '{}') as {
    Results?: Array<{ Vulnerabilities?: Array<{ Severity: string; VulnerabilityID: string }> | null }>;
  };
  const vulnerabilities = (report.Results ?? []).flatMap((result) => result.Vulnerabilities ?? []);
  const critical = vulnerabilities.filter((entry) => entry.Severity === 'CRITICAL').length;
  const high = vulnerabilities.filter((entry) => entry.Severity === 'HIGH').length;
  return [
    {
      name,
      state: critical || high ? 'fail' : 'ok',
      detail:
        critical || high
          ? `${image}: ${critical} critical, ${high} high: \`trivy image ${image}\` for the list; rebuild on patched base images`
          : `${image}: no high or critical vulnerabilities`,
      data: { image, critical, high },
    },
  ];
}

async function migrationsValidate(ctx: CommandContext): Promise<StatusItem[]> {
  if (!ctx.databaseUrl) return [{ name: 'migrations validate', state: 'fail', detail: NO_DATABASE_GIVEN }];
  try {
    const result = await new Migrator({ connectionString: ctx.databaseUrl, dir: defaultMigrationsDir }).validate();
    return [
      {
        name: 'migrations validate',
        state: 'ok',
        detail: `${result.checked} applied migration(s) match their files; ${result.pending} will be applied by the deploy`,
        data: result,
      },
    ];
  } catch (error) {
    return [{ name: 'migrations validate', state: 'fail', detail: maskUrl(errorMessage(error)) }];
  }
}

/**
 * Before a deploy: the newest verified backup of this very database is young enough (the rule of
 * `migrate --require-backup`, which the deploy's migration may enforce).
 */
async function verifiedBackupItem(ctx: CommandContext, maxAgeMs: number): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [{ name: 'verified backup', state: 'fail', detail: NO_DATABASE_GIVEN }];
  return probe('verified backup', async () => {
    const { database } = describePostgresUrl(url);
    const dir = backupDirOf(ctx);
    const identity = await addressedIdentity(url, 'lmsctl check');
    const newest = newestVerifiedBackupOf(
      await describeBackups(dir),
      { kind: 'database', database: identity },
      { requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED },
    );
    if (!newest) {
      return {
        name: 'verified backup',
        state: 'fail',
        detail: `no verified backup of ${database} in ${dir}: run \`lmsctl backup\``,
      };
    }
    const stale = newest.ageMs > maxAgeMs;
    return {
      name: 'verified backup',
      state: stale ? 'fail' : 'ok',
      detail: `${newest.file}, ${formatDuration(newest.ageMs)} old${stale ? ` (over ${formatDuration(maxAgeMs)})` : ''}`,
      data: { file: newest.file, ageMs: newest.ageMs },
    };
  });
}

/**
 * Weekly: a routine restore drill of this database within `maxAgeMs` proves its backups
 * restore. When none ran in that window, a deep verification of the newest backup (`backup
 * verify --deep`: every data block read by pg_restore) within the same window counts instead —
 * less than a drill (nothing restored, no row counted), but every byte a restore needs was read.
 * A drill that ran in the window and failed is never outweighed by it.
 */
async function restoreProofItems(ctx: CommandContext, maxAgeMs: number): Promise<StatusItem[]> {
  const drillItems = await probeDrill(ctx, maxAgeMs, true);
  const drillAge = drillItems[0]?.data?.ageMs;
  if (typeof drillAge === 'number' && drillAge <= maxAgeMs) return drillItems;
  const deep = await probe('drill', async () => {
    const url = ctx.databaseUrl;
    const selector: BackupSelector = url
      ? { kind: 'database', database: await addressedIdentity(url, 'lmsctl check') }
      : { kind: 'all' };
    const newest = selectBackups(
      (await describeBackups(backupDirOf(ctx))).filter((info) => info.complete),
      selector,
    )[0];
    const deepAge = newest?.deepVerifiedAt ? Date.now() - new Date(newest.deepVerifiedAt).getTime() : null;
    if (!newest || deepAge === null || deepAge > maxAgeMs) return [];
    return {
      name: 'drill',
      state: 'ok',
      detail:
        `no restore drill in the last ${formatDuration(maxAgeMs)}; the newest backup ${newest.file} was deep-verified ` +
        `${formatDuration(deepAge)} ago (every data block read): run \`lmsctl drill\` for the full proof`,
      data: { deepVerification: { file: newest.file, ageMs: deepAge }, drill: drillItems[0]?.data ?? null },
    };
  });
  return deep.length ? deep : drillItems;
}

const MANUAL: Record<Checklist, string[]> = {
  daily: ['look through the error log of the last 24 h for new kinds of errors'],
  weekly: [
    'review failed jobs (`lmsctl queue list`) and retry or clean them',
    'apply security updates to the hosts and images',
  ],
  predeploy: [
    'read the release notes for migrations that lock large tables',
    'announce the deploy window if the API will be degraded',
  ],
};

/** The operational checklists, automated where a machine can answer; the rest listed as manual. */
export async function check(
  ctx: CommandContext,
  checklist: Checklist,
  options: CheckOptions = {},
): Promise<CheckResult> {
  const items: StatusItem[] = [];
  if (checklist === 'daily') {
    items.push(...(await probeApi(ctx, options)), ...(await probePostgres(ctx)), ...(await probeRedis(ctx, options)));
    items.push(...(await prometheusItems(options)));
    items.push(...(await probeBackups(ctx, 26 * 3_600_000)));
    const lastBackup = items.find((item) => item.name === 'backup')?.data?.sizeBytes as number | undefined;
    items.push(...(await probeDisk('backup disk', backupDirOf(ctx), (lastBackup ?? 0) * 2)));
    items.push(...(await databaseDiskItem(ctx)));
  } else if (checklist === 'weekly') {
    items.push(...(await restoreProofItems(ctx, 8 * 86_400_000)));
    items.push(...(await probe('slow queries', () => slowQueries(ctx))));
    items.push(...(await alertDelivery(options)));
    items.push(...(await probe('dependency audit', () => dependencyAudit(ctx))));
    items.push(...(await probe('image scan', () => imageScan(ctx, options))));
  } else {
    items.push(...(await migrationsValidate(ctx)));
    items.push(...(await verifiedBackupItem(ctx, options.maxBackupAge ?? 24 * 3_600_000)));
    items.push(...(await probeApi(ctx, options)), ...(await probeQueues(ctx, options)));
  }
  items.push(...MANUAL[checklist].map((detail): StatusItem => ({ name: 'by hand', state: 'manual', detail })));
  return { checklist, passed: !items.some((item) => item.state === 'fail'), items };
}

export function renderCheck(result: CheckResult, style: ChalkInstance): string {
  const verdict = result.passed
    ? style.green(`${result.checklist} checks passed`)
    : style.red(`${result.checklist} checks FAILED`);
  return `${renderItems(result.items, style)}\n\n${verdict}`;
}
