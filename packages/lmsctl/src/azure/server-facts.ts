import type { Server } from '@azure/arm-postgresql-flexible';
import { maskUrl } from '@lms/core';
import type { CommandContext } from '../context.js';
import { connectAzure, resolveAzureScope, type AzureConnectionOptions, type AzureSession } from './client.js';
import { startProgress } from '../lib/progress.js';

/** Facts about flexible servers and long-running operations, shared by the Azure commands. */

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

export const isReplicaRole = (role: string | null) => role === 'AsyncReplica' || role === 'GeoAsyncReplica';

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

export async function session(ctx: CommandContext, options: AzureConnectionOptions): Promise<AzureSession> {
  return connectAzure(ctx, resolveAzureScope(ctx, options), options.testing);
}
