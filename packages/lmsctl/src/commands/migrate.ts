import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import {
  createDatabaseIfMissing,
  createMigrationFile,
  defaultMigrationsDir,
  describePostgresUrl,
  formatVersion,
  Migrator,
  type MigrationStatusEntry,
  type MigratorEvent,
} from '@lms/core';
import { requireDirectDatabaseUrl, requireSessionDatabaseUrl, type CommandContext } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { formatDuration } from '@lms/core/duration';
import { table } from '../output.js';

export interface MigrateCommonOptions {
  /** Folder of NNNN_name.sql files (default: the project's own migrations). */
  migrationsDir?: string;
  /** How long to wait for a concurrent run's lock (ms, `--lock-timeout`). */
  lockTimeout?: number;
}

export interface DatabaseRef {
  host: string;
  port: number;
  name: string;
}

function databaseRef(url: string): DatabaseRef {
  const { host, port, database } = describePostgresUrl(url);
  return { host, port, name: database };
}

function migrationsDirOf(ctx: CommandContext, options: MigrateCommonOptions): string {
  return options.migrationsDir ? path.resolve(ctx.cwd, options.migrationsDir) : defaultMigrationsDir;
}

/**
 * A migrator on the database URL for session work: `--database-url`, else DATABASE_DIRECT_URL,
 * else DATABASE_URL; `up` and `down` refuse one through a pooler first.
 */
function createMigrator(ctx: CommandContext, options: MigrateCommonOptions): Migrator {
  return new Migrator({
    connectionString: requireSessionDatabaseUrl(ctx),
    dir: migrationsDirOf(ctx, options),
    lockTimeoutMs: options.lockTimeout,
    onEvent: (event) => reportEvent(ctx, event),
  });
}

function reportEvent(ctx: CommandContext, event: MigratorEvent): void {
  const { out } = ctx;
  switch (event.kind) {
    case 'lock-wait':
      out.info(`waiting for another migration run to finish (${event.holder})`);
      break;
    case 'lock-acquired':
      out.debug(`lock acquired after ${formatDuration(event.waitedMs)}`);
      break;
    case 'apply-start':
      out.debug(`applying ${event.migration.filename}`);
      break;
    case 'apply-done':
      out.success(`applied ${event.migration.id} ${out.errStyle.dim(`(${formatDuration(event.durationMs)})`)}`);
      break;
    case 'revert-start':
      out.debug(`reverting ${event.migration.filename}`);
      break;
    case 'revert-done':
      out.success(`reverted ${event.migration.id} ${out.errStyle.dim(`(${formatDuration(event.durationMs)})`)}`);
      break;
  }
}

const versionLabel = (version: number | null) => (version === null ? 'none' : formatVersion(version));

export interface MigrateUpResult {
  database: DatabaseRef;
  dryRun: boolean;
  databaseCreated: boolean;
  applied: Array<{ version: number; id: string; durationMs: number }>;
  /** With --dry-run: what would be applied. */
  pending: Array<{ version: number; id: string }>;
  current: number | null;
}

export interface MigrateUpOptions extends MigrateCommonOptions {
  to?: number;
  dryRun?: boolean;
  createDatabase?: boolean;
  /** Refuse unless a verified backup of this database is younger than this (ms, `--require-backup`). */
  requireBackup?: number;
  /** Refuse contracting migrations (a rolling deploy: the previous version still serves). */
  expandOnly?: boolean;
}

/** Applies pending migrations (all, or up to `to`); a no-op when the database is current. */
export async function migrateUp(ctx: CommandContext, options: MigrateUpOptions = {}): Promise<MigrateUpResult> {
  // Its session advisory lock, taken through a transaction pooler, would stay behind on a pooled
  // server connection and block every later run until the pooler reconnects. A dry run takes none.
  const url = options.dryRun ? requireSessionDatabaseUrl(ctx) : await requireDirectDatabaseUrl(ctx, 'migrate');
  if (options.requireBackup !== undefined && !options.dryRun)
    await requireRecentBackup(ctx, url, options.requireBackup);
  const databaseCreated = options.createDatabase && !options.dryRun ? await createDatabaseIfMissing(url) : false;
  if (databaseCreated) ctx.out.success(`created database ${databaseRef(url).name}`);
  const result = await createMigrator(ctx, options).up({
    to: options.to,
    dryRun: options.dryRun,
    expandOnly: options.expandOnly,
  });
  return { database: databaseRef(url), dryRun: options.dryRun ?? false, databaseCreated, ...result };
}

/** `--require-backup`: the newest verified backup of this very database must be young enough. */
async function requireRecentBackup(ctx: CommandContext, url: string, maxAgeMs: number): Promise<void> {
  const { addressedIdentity, describeBackups, newestVerifiedBackupOf } = await import('../backup/inventory.js');
  const { backupDirOf } = await import('../backup/context.js');
  const dir = backupDirOf(ctx);
  const database = databaseRef(url);
  const identity = await addressedIdentity(url, 'lmsctl migrate');
  const newest = newestVerifiedBackupOf(
    await describeBackups(dir),
    { kind: 'database', database: identity },
    { requireSigned: ctx.config.LMS_BACKUP_REQUIRE_SIGNED },
  );
  const hint = `run \`lmsctl backup\` first (backups are looked up in ${dir})`;
  if (!newest) {
    const kind = ctx.config.LMS_BACKUP_REQUIRE_SIGNED ? 'verified, signed' : 'verified';
    throw new CliError(ExitCode.failed, `refusing to migrate ${database.name}: it has no ${kind} backup`, hint);
  }
  if (newest.ageMs > maxAgeMs) {
    throw new CliError(
      ExitCode.failed,
      `refusing to migrate ${database.name}: its newest verified backup (${newest.file}) is ${formatDuration(newest.ageMs)} old, over the ${formatDuration(maxAgeMs)} allowed`,
      hint,
    );
  }
  ctx.out.info(`newest verified backup: ${newest.file}, ${formatDuration(newest.ageMs)} old`);
}

export function renderMigrateUp(result: MigrateUpResult, style: ChalkInstance): string {
  const where = `${result.database.name} on ${result.database.host}:${result.database.port}`;
  if (result.dryRun) {
    if (result.pending.length === 0)
      return `${where} is up to date at ${versionLabel(result.current)}; nothing would be applied`;
    return [
      `would apply ${result.pending.length} migration(s) to ${where} (now at ${versionLabel(result.current)}):`,
      ...result.pending.map((migration) => `  ${migration.id}`),
      style.dim('dry run: nothing was changed'),
    ].join('\n');
  }
  if (result.applied.length === 0) return `${where} is up to date at ${versionLabel(result.current)}`;
  return `${where} is now at ${versionLabel(result.current)} (${result.applied.length} applied)`;
}

export interface MigrateStatusResult {
  database: DatabaseRef;
  current: number | null;
  latest: number | null;
  pending: number;
  problems: number;
  migrations: MigrationStatusEntry[];
}

/** Every migration file and applied record with its state (applied, pending, changed, missing). */
export async function migrateStatus(
  ctx: CommandContext,
  options: MigrateCommonOptions = {},
): Promise<MigrateStatusResult> {
  const { entries, current } = await createMigrator(ctx, options).status();
  const files = entries.filter((entry) => entry.state !== 'missing');
  return {
    database: databaseRef(requireSessionDatabaseUrl(ctx)),
    current,
    latest: files.at(-1)?.version ?? null,
    pending: entries.filter((entry) => entry.state === 'pending').length,
    problems: entries.filter((entry) => entry.state === 'changed' || entry.state === 'missing').length,
    migrations: entries,
  };
}

export function renderMigrateStatus(result: MigrateStatusResult, style: ChalkInstance): string {
  const stateStyle: Record<MigrationStatusEntry['state'], (text: string) => string> = {
    applied: style.green,
    pending: style.yellow,
    changed: style.red,
    missing: style.red,
  };
  const rows = result.migrations.map((entry) => [
    entry.id,
    stateStyle[entry.state](entry.state),
    entry.appliedAt ? entry.appliedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '',
    entry.appliedBy ?? '',
  ]);
  const summary = `${result.database.name} on ${result.database.host}:${result.database.port}: at ${versionLabel(result.current)}, latest ${versionLabel(result.latest)}, ${result.pending} pending${result.problems ? style.red(`, ${result.problems} problem(s): run \`lmsctl migrate validate\``) : ''}`;
  return `${table(['MIGRATION', 'STATE', 'APPLIED AT', 'APPLIED BY'], rows, style)}\n\n${summary}`;
}

export interface MigrateValidateResult {
  database: DatabaseRef;
  valid: true;
  checked: number;
  pending: number;
  current: number | null;
}

/** Checks applied migrations against the files; throws (exit 3) naming each edited or missing one. */
export async function migrateValidate(
  ctx: CommandContext,
  options: MigrateCommonOptions = {},
): Promise<MigrateValidateResult> {
  const result = await createMigrator(ctx, options).validate();
  return { database: databaseRef(requireSessionDatabaseUrl(ctx)), valid: true, ...result };
}

export function renderMigrateValidate(result: MigrateValidateResult): string {
  return `${result.checked} applied migration(s) match their files; ${result.pending} pending`;
}

export interface MigrateCreateResult {
  version: number;
  id: string;
  path: string;
}

/** Writes the next-numbered migration file with an empty up and down section. */
export async function migrateCreate(
  ctx: CommandContext,
  name: string,
  options: Pick<MigrateCommonOptions, 'migrationsDir'> = {},
): Promise<MigrateCreateResult> {
  const file = await createMigrationFile(migrationsDirOf(ctx, options), name);
  return { version: file.version, id: file.id, path: path.relative(ctx.cwd, file.path) || file.path };
}

export function renderMigrateCreate(result: MigrateCreateResult): string {
  return `created ${result.path}`;
}

export interface MigrateDownResult {
  database: DatabaseRef;
  reverted: Array<{ version: number; id: string; durationMs: number }>;
  current: number | null;
}

/** Reverts the newest `steps` migrations through their down sections, after confirmation. */
export interface MigrateDownOptions extends MigrateCommonOptions {
  steps?: number;
}

export async function migrateDown(ctx: CommandContext, options: MigrateDownOptions = {}): Promise<MigrateDownResult> {
  const steps = options.steps ?? 1;
  const database = databaseRef(await requireDirectDatabaseUrl(ctx, 'revert migrations'));
  const migrator = createMigrator(ctx, options);
  const plan = await migrator.planDown(steps);
  const names = plan.map((migration) => migration.id).join(', ');
  ctx.out.info(
    `this reverts ${plan.length} migration(s) on ${database.name} at ${database.host}:${database.port}: ${names}` +
      ' — whatever their down sections drop (tables and their data) is destroyed',
  );
  await confirmOrRefuse(`Revert ${names} on ${database.name}?`, {
    yes: ctx.yes,
    action: `revert ${names} on ${database.name}`,
  });
  const result = await migrator.down(
    steps,
    plan.map((migration) => migration.version),
  );
  return { database, ...result };
}

export function renderMigrateDown(result: MigrateDownResult): string {
  return `${result.database.name} is now at ${versionLabel(result.current)} (${result.reverted.length} reverted)`;
}
