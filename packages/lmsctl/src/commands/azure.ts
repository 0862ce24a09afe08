import type { Server } from '@azure/arm-postgresql-flexible';
import type { ChalkInstance } from 'chalk';
import { maskUrl } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import {
  connectAzure,
  resolveAzureScope,
  withAzureErrors,
  type AzureConnectionOptions,
  type AzureSession,
} from '../lib/azure-client.js';
import { confirmOrRefuse } from '../lib/confirm.js';
import { startProgress } from '../lib/progress.js';
import { table } from '../output.js';

/** A flexible server as the Azure commands show it. */
export interface AzureServerSummary {
  name: string;
  location: string;
  /** Ready, Stopped, Updating, Provisioning, … */
  state: string | null;
  /** PostgreSQL major version (minor in parentheses when known). */
  version: string | null;
  /** High availability: mode and, when enabled, the standby's state. */
  highAvailability: string;
  /** Primary, AsyncReplica, GeoAsyncReplica or None. */
  replicationRole: string | null;
  /** For a read replica, the server it replicates from. */
  primary: string | null;
  /** For a replica, its replication state (Active, Catchup, Broken, …). */
  replicationState: string | null;
  fqdn: string | null;
  sku: string | null;
  createdAt: string | null;
}

/** The last segment of an ARM resource id (the resource's name). */
export function nameOfResourceId(id: string | undefined): string | null {
  return id ? (id.split('/').filter(Boolean).at(-1) ?? null) : null;
}

const isReplicaRole = (role: string | null) => role === 'AsyncReplica' || role === 'GeoAsyncReplica';

export function summarizeServer(server: Server): AzureServerSummary {
  const role = server.replicationRole ?? server.replica?.role ?? null;
  const ha = server.highAvailability;
  const haEnabled = ha?.mode !== undefined && ha.mode !== 'Disabled';
  return {
    name: server.name ?? '',
    location: server.location,
    state: server.state ?? null,
    version: server.version ? `${server.version}${server.minorVersion ? ` (${server.minorVersion})` : ''}` : null,
    highAvailability: haEnabled ? `${ha.mode}${ha.state ? ` (${ha.state})` : ''}` : 'Disabled',
    replicationRole: role,
    primary: isReplicaRole(role) ? nameOfResourceId(server.sourceServerResourceId) : null,
    replicationState: isReplicaRole(role) ? (server.replica?.replicationState ?? null) : null,
    fqdn: server.fullyQualifiedDomainName ?? null,
    sku: server.sku ? `${server.sku.name} (${server.sku.tier})` : null,
    createdAt: server.systemData?.createdAt?.toISOString() ?? null,
  };
}

/** Azure's rule for flexible server names; null when `name` follows it, else what is wrong. */
export function serverNameProblem(name: string): string | null {
  if (name.length < 3 || name.length > 63) return 'must be 3 to 63 characters long';
  if (!/^[a-z0-9-]+$/.test(name)) return 'may contain only lowercase letters, digits and hyphens';
  if (name.startsWith('-') || name.endsWith('-')) return 'cannot start or end with a hyphen';
  return null;
}

/** The span a point-in-time restore can reach. */
export interface RestoreWindow {
  earliest: Date;
  latest: Date;
  retentionDays: number;
}

/** Azure's default backup retention, for a server that does not report its own. */
const DEFAULT_RETENTION_DAYS = 7;

/**
 * The earliest and latest restore points of a server: backups reach back the retention period,
 * but never before the server existed (nor before the earliest point the service reports);
 * the latest point is now, since the transaction log is archived continuously.
 */
export function restoreWindowOf(server: Server, now: Date): RestoreWindow {
  const retentionDays = server.backup?.backupRetentionDays ?? DEFAULT_RETENTION_DAYS;
  const bounds = [now.getTime() - retentionDays * 86_400_000];
  if (server.systemData?.createdAt) bounds.push(server.systemData.createdAt.getTime());
  if (server.backup?.earliestRestoreDate) bounds.push(server.backup.earliestRestoreDate.getTime());
  return { earliest: new Date(Math.max(...bounds)), latest: now, retentionDays };
}

/**
 * The DATABASE_URL that points the application at `fqdn`: the current DATABASE_URL with only
 * the host changed (same user, database and parameters), else the server's administrator and
 * database `lms`; TLS required, password masked.
 */
export function appDatabaseUrl(ctx: CommandContext, fqdn: string, administratorLogin: string | undefined): string {
  const current = ctx.databaseUrl && URL.canParse(ctx.databaseUrl) ? new URL(ctx.databaseUrl) : null;
  const url =
    current ?? new URL(`postgres://${encodeURIComponent(administratorLogin ?? 'postgres')}:password@host/lms`);
  url.hostname = fqdn;
  url.searchParams.delete('host');
  // 6432 is the server's built-in PgBouncer; anything else was the old host's own port.
  if (url.port !== '6432') url.port = '5432';
  if (!url.searchParams.has('sslmode')) url.searchParams.set('sslmode', 'require');
  return maskUrl(url.toString());
}

/** The part of the SDK's pollers the commands use. */
export interface OperationPoller<T> {
  pollUntilDone(options?: { abortSignal?: AbortSignal }): Promise<T>;
  onProgress(callback: (state: { status: string }) => void): () => void;
}

/** Polls a long-running operation to its end, with a progress line on a terminal. */
export async function waitForOperation<T>(
  ctx: CommandContext,
  label: string,
  poller: OperationPoller<T>,
  signal?: AbortSignal,
): Promise<T> {
  let status = 'running';
  const stopListening = poller.onProgress((state) => (status = state.status));
  const progress = startProgress(ctx.out, label, () => status);
  try {
    return await poller.pollUntilDone(signal ? { abortSignal: signal } : undefined);
  } finally {
    progress.stop();
    stopListening();
  }
}

async function session(ctx: CommandContext, options: AzureConnectionOptions): Promise<AzureSession> {
  return connectAzure(ctx, resolveAzureScope(ctx, options), options.testing);
}

export interface AzureServersResult {
  subscriptionId: string;
  resourceGroup: string;
  servers: AzureServerSummary[];
}

/** `lmsctl azure servers`: the flexible servers of the resource group. */
export async function azureServers(ctx: CommandContext, options: AzureConnectionOptions): Promise<AzureServersResult> {
  const azure = await session(ctx, options);
  const { scope } = azure;
  return withAzureErrors(scope, async () => {
    const servers: AzureServerSummary[] = [];
    for await (const server of azure.client.servers.listByResourceGroup(scope.resourceGroup)) {
      servers.push(summarizeServer(server));
    }
    servers.sort((a, b) => a.name.localeCompare(b.name));
    return { subscriptionId: scope.subscriptionId, resourceGroup: scope.resourceGroup, servers };
  });
}

export function renderAzureServers(result: AzureServersResult, style: ChalkInstance): string {
  if (result.servers.length === 0) return `no flexible servers in resource group ${result.resourceGroup}`;
  return table(
    ['NAME', 'STATE', 'VERSION', 'LOCATION', 'HA', 'ROLE', 'FQDN'],
    result.servers.map((server) => [
      server.name,
      server.state === 'Ready' ? style.green(server.state) : (server.state ?? '?'),
      server.version ?? '?',
      server.location,
      server.highAvailability,
      server.primary ? `${server.replicationRole} of ${server.primary}` : (server.replicationRole ?? 'None'),
      server.fqdn ?? '',
    ]),
    style,
  );
}

export interface AzureBackupsResult {
  server: string;
  resourceGroup: string;
  retentionDays: number;
  geoRedundant: boolean;
  createdAt: string | null;
  /** The restore window: any time from `earliestRestorePoint` to `latestRestorePoint` (now). */
  earliestRestorePoint: string;
  latestRestorePoint: string;
  backups: Array<{ name: string; type: string | null; completedAt: string | null; source: string | null }>;
}

/** `lmsctl azure backups --server NAME`: the server's backups and its point-in-time restore window. */
export async function azureBackups(
  ctx: CommandContext,
  server: string,
  options: AzureConnectionOptions,
): Promise<AzureBackupsResult> {
  const azure = await session(ctx, options);
  const { scope, client } = azure;
  return withAzureErrors(scope, async () => {
    const found = await client.servers.get(scope.resourceGroup, server);
    const window = restoreWindowOf(found, new Date());
    const backups: AzureBackupsResult['backups'] = [];
    for await (const backup of client.backupsAutomaticAndOnDemand.listByServer(scope.resourceGroup, server)) {
      backups.push({
        name: backup.name ?? '',
        type: backup.backupType ?? null,
        completedAt: backup.completedTime?.toISOString() ?? null,
        source: backup.source ?? null,
      });
    }
    // Newest first, as `backup list` shows local backups.
    backups.sort((a, b) => (b.completedAt ?? '').localeCompare(a.completedAt ?? ''));
    return {
      server,
      resourceGroup: scope.resourceGroup,
      retentionDays: window.retentionDays,
      geoRedundant: found.backup?.geoRedundantBackup === 'Enabled',
      createdAt: found.systemData?.createdAt?.toISOString() ?? null,
      earliestRestorePoint: window.earliest.toISOString(),
      latestRestorePoint: window.latest.toISOString(),
      backups,
    };
  });
}

export function renderAzureBackups(result: AzureBackupsResult, style: ChalkInstance): string {
  const lines = [
    `${style.bold(result.server)}: backups kept ${result.retentionDays} days${result.geoRedundant ? ', geo-redundant' : ''}`,
    `restore window: ${result.earliestRestorePoint} → ${result.latestRestorePoint} (now)`,
    '',
  ];
  if (result.backups.length === 0) lines.push('no backups listed yet');
  else {
    lines.push(
      table(
        ['COMPLETED', 'TYPE', 'NAME'],
        result.backups.map((backup) => [backup.completedAt ?? '?', backup.type ?? '?', backup.name]),
        style,
      ),
    );
  }
  lines.push(
    '',
    `restore with: lmsctl azure pitr --server ${result.server} --restore-time <time in the window> --target-server <new name>`,
  );
  return lines.join('\n');
}

export interface AzureReplicaListResult {
  server: string;
  replicas: AzureServerSummary[];
}

/** `lmsctl azure replica list --server NAME`: the read replicas of a server. */
export async function azureReplicaList(
  ctx: CommandContext,
  server: string,
  options: AzureConnectionOptions,
): Promise<AzureReplicaListResult> {
  const azure = await session(ctx, options);
  return withAzureErrors(azure.scope, async () => {
    const replicas: AzureServerSummary[] = [];
    for await (const replica of azure.client.replicas.listByServer(azure.scope.resourceGroup, server)) {
      replicas.push(summarizeServer(replica));
    }
    return { server, replicas };
  });
}

export function renderAzureReplicaList(result: AzureReplicaListResult, style: ChalkInstance): string {
  if (result.replicas.length === 0) return `${result.server} has no read replicas`;
  return table(
    ['REPLICA', 'LOCATION', 'ROLE', 'REPLICATION', 'STATE', 'FQDN'],
    result.replicas.map((replica) => [
      replica.name,
      replica.location,
      replica.replicationRole ?? '?',
      replica.replicationState === 'Active' ? style.green(replica.replicationState) : (replica.replicationState ?? '?'),
      replica.state ?? '?',
      replica.fqdn ?? '',
    ]),
    style,
  );
}

export interface ReplicaPromoteOptions extends AzureConnectionOptions {
  /** standalone: the replica becomes an independent server; switchover: it swaps roles with its primary. */
  mode?: 'standalone' | 'switchover';
  /** Do not wait for the replica to catch up (the primary is gone): recent transactions may be lost. */
  forced?: boolean;
}

export interface ReplicaPromoteResult {
  replica: string;
  /** The primary it replicated from. */
  primary: string | null;
  mode: 'Standalone' | 'Switchover';
  option: 'Planned' | 'Forced';
  /** Role and state after the promotion. */
  role: string | null;
  state: string | null;
  fqdn: string | null;
  elapsedMs: number;
  /** Where to point the application (password masked). */
  databaseUrl: string | null;
}

/**
 * `lmsctl azure replica promote`: the seed's regional failover step. Checks that the server is
 * a read replica, says what will happen and asks, then promotes it through a PATCH of
 * `properties.replica` and waits for the operation.
 */
export async function azureReplicaPromote(
  ctx: CommandContext,
  replica: string,
  options: ReplicaPromoteOptions,
): Promise<ReplicaPromoteResult> {
  const mode = options.mode === 'switchover' ? 'Switchover' : 'Standalone';
  const option = options.forced ? 'Forced' : 'Planned';
  const azure = await session(ctx, options);
  const { scope, client } = azure;
  return withAzureErrors(scope, async () => {
    const found = summarizeServer(await client.servers.get(scope.resourceGroup, replica));
    if (!isReplicaRole(found.replicationRole)) {
      throw usageError(
        `${replica} is not a read replica (its role is ${found.replicationRole ?? 'None'})`,
        '`lmsctl azure replica list --server <primary>` lists the replicas of a server',
      );
    }
    const primary = found.primary ?? 'its primary';
    ctx.out.info(
      mode === 'Standalone'
        ? `this promotes read replica ${replica} (${found.location}) to a standalone server: it stops replicating from ${primary} for good and accepts writes`
        : `this switches ${replica} (${found.location}) and ${primary} over: ${replica} becomes the primary, ${primary} its replica`,
    );
    if (options.forced) {
      ctx.out.warn(`--forced does not wait for ${replica} to catch up: transactions not yet replicated are lost`);
    }
    await confirmOrRefuse(`Promote ${replica} (${mode.toLowerCase()}, ${option.toLowerCase()})?`, {
      yes: ctx.yes,
      action: `promote replica ${replica} of ${primary}`,
      stderr: ctx.out.streams.stderr,
    });
    const started = Date.now();
    const poller = await client.servers.beginUpdate(
      scope.resourceGroup,
      replica,
      { replica: { promoteMode: mode, promoteOption: option } },
      azure.lroOptions,
    );
    const done = await waitForOperation(ctx, `promoting ${replica}`, poller);
    // The operation normally ends with the server's new state; without a body, read it.
    const after = done?.name ? done : await client.servers.get(scope.resourceGroup, replica);
    const summary = summarizeServer(after);
    return {
      replica,
      primary: found.primary,
      mode,
      option,
      role: summary.replicationRole,
      state: summary.state,
      fqdn: summary.fqdn,
      elapsedMs: Date.now() - started,
      databaseUrl: summary.fqdn ? appDatabaseUrl(ctx, summary.fqdn, after.administratorLogin) : null,
    };
  });
}

export function renderReplicaPromote(result: ReplicaPromoteResult, style: ChalkInstance): string {
  const what =
    result.mode === 'Standalone'
      ? 'to a standalone server'
      : `as the primary (${result.primary ?? 'the old primary'} is now its replica)`;
  const lines = [
    `${style.green('promoted')} ${result.replica}${result.primary ? ` (replica of ${result.primary})` : ''} ${what} in ${formatDuration(result.elapsedMs)}`,
    `  role ${result.role ?? '?'}, state ${result.state ?? '?'}${result.option === 'Forced' ? ', forced' : ''}`,
  ];
  if (result.databaseUrl) {
    lines.push('  point the application at it (set the password):', `    DATABASE_URL=${result.databaseUrl}`);
  }
  return lines.join('\n');
}
